/**
 * Reads an adapter upload: multipart/form-data with a `name` field and either the two PEFT files
 * (recognised by file name) or one `.tar` / `.tar.gz` holding them. Archive entries that are not
 * regular files, or whose paths climb out (`..`, absolute), are refused; other files in the
 * archive are skipped unread, and what is unpacked is bounded by the upload limit (a small
 * gzip cannot unpack into gigabytes).
 */
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { FastifyRequest } from 'fastify';
import '@fastify/multipart';
import tar from 'tar-stream';
import { InvalidUploadError, LoraServeError, PayloadTooLargeError } from '../errors.js';
import { CONFIG_FILE, WEIGHTS_FILE, type AdapterFiles } from '../lora/index.js';

export interface Upload {
  name: unknown;
  files: AdapterFiles;
}

const ARCHIVE = /\.(tar|tar\.gz|tgz)$/i;

async function readArchive(data: Buffer, limit: number): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const extract = tar.extract();
  const gz = data[0] === 0x1f && data[1] === 0x8b;
  const source = Readable.from([data]);
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      // A broken archive destroys the entry stream too; its error is the archive's, reported below.
      stream.on('error', () => {});
      const path = header.name.replace(/^\.\//, '');
      if (header.type === 'directory') {
        stream.resume();
        stream.on('end', next);
        return;
      }
      if (header.type !== 'file')
        return reject(new InvalidUploadError(`archive entry "${header.name}" is a ${header.type}; only regular files are accepted`));
      if (path.startsWith('/') || path.split('/').includes('..'))
        return reject(new InvalidUploadError(`archive entry "${header.name}" points outside the archive`));
      const base = path.split('/').pop()!;
      if (base !== CONFIG_FILE && base !== WEIGHTS_FILE) {
        stream.resume();
        stream.on('end', next);
        return;
      }
      if (out.has(base)) return reject(new InvalidUploadError(`the archive holds ${base} twice`));
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => chunks.push(c as Buffer));
      stream.on('end', () => {
        out.set(base, Buffer.concat(chunks));
        next();
      });
    });
    extract.on('finish', resolve);
    extract.on('error', (cause) =>
      reject(
        cause instanceof PayloadTooLargeError
          ? cause
          : new InvalidUploadError(`the archive could not be read: ${cause.message}`, { cause }),
      ),
    );
  });
  if (gz) {
    let unpacked = 0;
    const gunzip = createGunzip();
    gunzip.on('data', (c: Buffer) => {
      unpacked += c.length;
      if (unpacked > limit)
        gunzip.destroy(new PayloadTooLargeError(`the archive unpacks to more than this server's ${limit}-byte upload limit`));
    });
    source
      .pipe(gunzip)
      .on('error', (cause) => extract.destroy(cause))
      .pipe(extract);
  } else source.pipe(extract);
  await done;
  return out;
}

export async function readUpload(request: FastifyRequest): Promise<Upload> {
  if (!request.isMultipart()) throw new InvalidUploadError('send multipart/form-data with a "name" field and the adapter files');
  let name: unknown;
  const files = new Map<string, Buffer>();
  try {
    for await (const part of request.parts()) {
      if (part.type === 'field') {
        if (part.fieldname === 'name') name = part.value;
        continue;
      }
      const data = await part.toBuffer();
      if (part.file.truncated) throw new PayloadTooLargeError(`file "${part.filename}" is larger than this server accepts`);
      const filename = part.filename.split(/[\\/]/).pop() ?? '';
      if (ARCHIVE.test(filename)) for (const [k, v] of await readArchive(data, request.server.serving.config.uploadBytes)) files.set(k, v);
      else if (filename === CONFIG_FILE || filename === WEIGHTS_FILE) files.set(filename, data);
      else
        throw new InvalidUploadError(
          `unexpected file "${part.filename}": send ${CONFIG_FILE} and ${WEIGHTS_FILE}, or one .tar/.tar.gz holding them`,
        );
    }
  } catch (err) {
    // The multipart parser's own errors (a wrong boundary, a body cut short) carry no code; Fastify's carry FST_*.
    if (err instanceof LoraServeError || String((err as { code?: unknown }).code ?? '').startsWith('FST_')) throw err;
    throw new InvalidUploadError(`the multipart body could not be read: ${(err as Error).message}`, { cause: err });
  }
  const config = files.get(CONFIG_FILE);
  const weights = files.get(WEIGHTS_FILE);
  if (!config || !weights) throw new InvalidUploadError(`the upload lacks ${!config ? CONFIG_FILE : WEIGHTS_FILE}`);
  return { name, files: { config: config.toString('utf8'), weights } };
}
