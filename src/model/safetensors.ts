import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { SafetensorsError } from '../errors.js';
import { parseStrictJson, type StrictJsonError } from '../util/strict-json.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { bf16ToF32, f16ToF32 } from '../util/half.js';

/** Same bound as the reference implementation: a header larger than this is refused unread. */
export const MAX_HEADER_BYTES = 100_000_000;

export const DTYPE_BYTES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  U16: 2,
  I16: 2,
  F16: 2,
  BF16: 2,
  U32: 4,
  I32: 4,
  F32: 4,
  U64: 8,
  I64: 8,
  F64: 8,
} as const;
export type Dtype = keyof typeof DTYPE_BYTES;

export interface TensorInfo {
  name: string;
  dtype: Dtype;
  shape: number[];
  /** Byte offset of the tensor in the whole file (8 + header length + data_offsets[0]). */
  fileOffset: number;
  byteLength: number;
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  dataStart: number;
}

const isDtype = (d: unknown): d is Dtype => typeof d === 'string' && Object.hasOwn(DTYPE_BYTES, d);

/**
 * Parses and validates a header against the size of the file it came from. Every rule the
 * reference implementation enforces is checked, and the error names the rule and the tensor.
 */
export function parseHeader(headerBytes: Uint8Array, fileSize: number, source: string): SafetensorsHeader {
  const fail = (msg: string): never => {
    throw new SafetensorsError(`${source}: ${msg}`);
  };
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch (cause) {
    throw new SafetensorsError(`${source}: header is not valid UTF-8`, { cause });
  }
  if (!text.startsWith('{')) fail('header does not start with "{"');
  let raw: unknown;
  try {
    raw = parseStrictJson(text);
  } catch (cause) {
    throw new SafetensorsError(`${source}: header is not valid JSON (${(cause as StrictJsonError).message})`, { cause });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('header is not a JSON object');
  const dataStart = 8 + headerBytes.length;
  const dataLength = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  const spans: Array<[number, number, string]> = [];
  for (const [name, entry] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) fail('__metadata__ is not an object of strings');
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__["${k}"] is not a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) fail(`tensor "${name}" entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (!isDtype(dtype)) fail(`tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      fail(`tensor "${name}" shape must be a list of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)) {
      fail(`tensor "${name}" data_offsets must be two non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) fail(`tensor "${name}" data_offsets end before they begin`);
    let elements = 1n;
    for (const d of shape as number[]) elements *= BigInt(d);
    const expectedBytes = elements * BigInt(DTYPE_BYTES[dtype as Dtype]);
    if (expectedBytes > BigInt(Number.MAX_SAFE_INTEGER)) fail(`tensor "${name}" shape overflows the size computation`);
    if (Number(expectedBytes) !== end - begin) {
      fail(`tensor "${name}" shape ${JSON.stringify(shape)} × ${dtype} is ${expectedBytes} bytes but data_offsets span ${end - begin}`);
    }
    spans.push([begin, end, name]);
    tensors.set(name, { name, dtype: dtype as Dtype, shape: shape as number[], fileOffset: dataStart + begin, byteLength: end - begin });
  }
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let cursor = 0;
  for (const [begin, end, name] of spans) {
    if (begin !== cursor) {
      fail(
        begin < cursor
          ? `tensor "${name}" overlaps the tensor before it`
          : `gap in the data before tensor "${name}" (offset ${begin}, expected ${cursor})`,
      );
    }
    cursor = end;
  }
  if (cursor !== dataLength) fail(`tensors cover ${cursor} bytes of data but the file holds ${dataLength}`);
  return { tensors, metadata, dataStart };
}

function headerLength(prefix: Uint8Array, fileSize: number, source: string): number {
  if (fileSize < 8) throw new SafetensorsError(`${source}: file is ${fileSize} bytes, shorter than the 8-byte header length`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsError(`${source}: header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (8n + n > BigInt(fileSize)) throw new SafetensorsError(`${source}: header length ${n} runs past the end of the ${fileSize}-byte file`);
  return Number(n);
}

/** A safetensors file opened for reading; tensors are read on demand, never the whole file. */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    readonly header: SafetensorsHeader,
    private readonly fd: number,
  ) {}

  static open(path: string): SafetensorsFile {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      const prefix = new Uint8Array(8);
      readSync(fd, prefix, 0, Math.min(8, size), 0);
      const n = headerLength(prefix, size, path);
      const headerBytes = new Uint8Array(n);
      readSync(fd, headerBytes, 0, n, 8);
      return new SafetensorsFile(path, parseHeader(headerBytes, size, path), fd);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  get tensors(): Map<string, TensorInfo> {
    return this.header.tensors;
  }

  readBytes(name: string): Uint8Array {
    const info = this.info(name);
    const out = new Uint8Array(info.byteLength);
    this.readInto(out, 0, info.byteLength, info.fileOffset, name);
    return out;
  }

  /** Reads a floating tensor as float32 (F16 and BF16 are widened exactly). */
  readF32(name: string): Float32Array {
    return toF32(this.info(name), this.readBytes(name), this.path);
  }

  /**
   * Reads rows of a 2-D floating tensor as float32 `[rows.length, columns]`: an embedding lookup
   * straight from the file (the OS page cache holds the table, not this process).
   */
  readRowsF32(name: string, rows: ArrayLike<number>): Float32Array {
    const info = this.info(name);
    const [count, columns] = info.shape as [number, number];
    if (info.shape.length !== 2) throw new SafetensorsError(`${this.path}: "${name}" is not a 2-D tensor`);
    const rowBytes = info.byteLength / count;
    const out = new Uint8Array(rows.length * rowBytes);
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      if (!Number.isInteger(row) || row < 0 || row >= count) throw new RangeError(`row ${row} is outside "${name}" (${count} rows)`);
      this.readInto(out, i * rowBytes, rowBytes, info.fileOffset + row * rowBytes, name);
    }
    return toF32({ ...info, shape: [rows.length, columns], byteLength: out.length }, out, this.path);
  }

  private readInto(out: Uint8Array, at: number, length: number, position: number, name: string): void {
    let done = 0;
    while (done < length) {
      const got = readSync(this.fd, out, at + done, length - done, position + done);
      if (got === 0) throw new SafetensorsError(`${this.path}: file ended while reading "${name}"`);
      done += got;
    }
  }

  info(name: string): TensorInfo {
    const info = this.header.tensors.get(name);
    if (!info) throw new SafetensorsError(`${this.path}: no tensor named "${name}"`);
    return info;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Parses a whole safetensors file held in memory (uploads, adapters). */
export function parseSafetensorsBuffer(
  buf: Uint8Array,
  source = 'safetensors',
): { header: SafetensorsHeader; readF32(name: string): Float32Array } {
  const n = headerLength(buf, buf.length, source);
  const header = parseHeader(buf.subarray(8, 8 + n), buf.length, source);
  return {
    header,
    readF32(name: string) {
      const info = header.tensors.get(name);
      if (!info) throw new SafetensorsError(`${source}: no tensor named "${name}"`);
      return toF32(info, buf.slice(info.fileOffset, info.fileOffset + info.byteLength), source);
    },
  };
}

function toF32(info: TensorInfo, bytes: Uint8Array, source: string): Float32Array {
  const count = info.byteLength / DTYPE_BYTES[info.dtype];
  switch (info.dtype) {
    case 'F32':
      return new Float32Array(bytes.buffer, bytes.byteOffset, count).slice();
    case 'F16':
      return f16ToF32(new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)));
    case 'BF16':
      return bf16ToF32(new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)));
    case 'F64':
      return Float32Array.from(new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)));
    default:
      throw new SafetensorsError(`${source}: tensor "${info.name}" has dtype ${info.dtype}, expected a floating type`);
  }
}

export interface TensorToWrite {
  dtype: 'F32' | 'F16' | 'BF16' | 'I64' | 'U8';
  shape: number[];
  data: Float32Array | Uint16Array | BigInt64Array | Uint8Array;
}

export interface TensorLayout {
  name: string;
  dtype: Dtype;
  shape: number[];
}

/**
 * The length-prefixed header (padded with spaces to 8-byte alignment) of a file whose tensors lie
 * back to back in the given order. Metadata values of the same length give a header of the same
 * length, so a header can be rewritten in place once its data is written.
 */
export function encodeSafetensorsHeader(tensors: TensorLayout[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + headerBytes.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  return out;
}

/** The pieces of a safetensors file in write order: the header, then each tensor's bytes, sorted by name. */
function safetensorsParts(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array[] {
  const names = Object.keys(tensors).sort();
  for (const name of names) {
    const t = tensors[name]!;
    const expected = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== expected)
      throw new SafetensorsError(`tensor "${name}": ${t.data.byteLength} bytes of data for shape ${JSON.stringify(t.shape)} ${t.dtype}`);
  }
  const header = encodeSafetensorsHeader(
    names.map((name) => ({ name, dtype: tensors[name]!.dtype, shape: tensors[name]!.shape })),
    metadata,
  );
  return [
    header,
    ...names.map((name) => {
      const d = tensors[name]!.data;
      return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    }),
  ];
}

/** Encodes tensors as safetensors bytes in one buffer. */
export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const parts = safetensorsParts(tensors, metadata);
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Writes a safetensors file crash-safely, streaming each tensor rather than concatenating them. */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, safetensorsParts(tensors, metadata));
}
