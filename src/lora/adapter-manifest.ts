/**
 * The seal the store writes beside an uploaded adapter's files: each file's size and SHA-256 as
 * they were when the upload passed validation. Reading the adapter later checks the seal, so a
 * file truncated, bit-flipped or replaced on disk is caught before its bytes reach a device slot.
 */
import { createHash } from 'node:crypto';
import { AdapterCorruptedError } from '../errors.js';

export const MANIFEST_FILE = 'loraserve-manifest.json';

interface FileSeal {
  bytes: number;
  sha256: string;
}

export type Manifest = Record<string, FileSeal>;

const seal = (data: Uint8Array | string): FileSeal => {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  return { bytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') };
};

export function manifestOf(files: Record<string, Uint8Array | string>): string {
  return `${JSON.stringify({ files: Object.fromEntries(Object.entries(files).map(([name, data]) => [name, seal(data)])) }, null, 2)}\n`;
}

/** Throws AdapterCorruptedError naming the first file that no longer matches its seal. */
export function checkManifest(adapter: string, text: string, files: Record<string, Uint8Array | string>): void {
  let sealed: Manifest;
  try {
    sealed = (JSON.parse(text) as { files: Manifest }).files;
    if (sealed === null || typeof sealed !== 'object') throw new TypeError('no "files" object');
  } catch (cause) {
    throw new AdapterCorruptedError(
      `adapter "${adapter}" is damaged on disk: its ${MANIFEST_FILE} is unreadable; upload the adapter again`,
      { cause },
    );
  }
  for (const [name, data] of Object.entries(files)) {
    const want = sealed[name];
    const got = seal(data);
    if (!want || want.bytes !== got.bytes || want.sha256 !== got.sha256) {
      const how = !want
        ? 'is not in its manifest'
        : want.bytes !== got.bytes
          ? `is ${got.bytes} bytes, ${want.bytes} at upload`
          : 'has a different SHA-256 than at upload';
      throw new AdapterCorruptedError(`adapter "${adapter}" is damaged on disk: ${name} ${how}; upload the adapter again`);
    }
  }
}
