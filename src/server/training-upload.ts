/** Reads a `/v1/files` upload: multipart/form-data with a `purpose` field and one `file`, bounded by the training file limit. */
import type { FastifyRequest } from 'fastify';
import '@fastify/multipart';
import { InvalidUploadError, LoraServeError, PayloadTooLargeError } from '../errors.js';

export interface FileUpload {
  purpose: unknown;
  filename: string;
  data: Buffer;
}

export async function readFileUpload(request: FastifyRequest, limit: number): Promise<FileUpload> {
  if (!request.isMultipart()) throw new InvalidUploadError('send multipart/form-data with a "purpose" field and a "file"');
  let purpose: unknown;
  let file: { filename: string; data: Buffer } | null = null;
  try {
    for await (const part of request.parts({ limits: { fileSize: limit, files: 1 } })) {
      if (part.type === 'field') {
        if (part.fieldname !== 'purpose') throw new InvalidUploadError(`unexpected field "${part.fieldname}": send "purpose" and "file"`);
        purpose = part.value;
        continue;
      }
      if (part.fieldname !== 'file') throw new InvalidUploadError(`unexpected file field "${part.fieldname}": send the data as "file"`);
      const data = await part.toBuffer();
      if (part.file.truncated)
        throw new PayloadTooLargeError(`"${part.filename}" is larger than this server's ${limit}-byte training file limit`, {
          param: 'file',
        });
      file = { filename: part.filename.split(/[\\/]/).pop() || 'file.jsonl', data };
    }
  } catch (err) {
    if (err instanceof LoraServeError || String((err as { code?: unknown }).code ?? '').startsWith('FST_')) throw err;
    throw new InvalidUploadError(`the multipart body could not be read: ${(err as Error).message}`, { cause: err });
  }
  if (!file) throw new InvalidUploadError('the upload lacks its "file"', { param: 'file' });
  return { purpose, ...file };
}
