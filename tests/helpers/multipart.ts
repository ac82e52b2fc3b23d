import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { App } from '../../src/server/index.js';

/** A multipart/form-data body for app.inject: text fields and files (name → bytes). */
export function multipart(
  fields: Record<string, string>,
  files: Record<string, Uint8Array | string>,
): { payload: Buffer; headers: Record<string, string> } {
  const boundary = `----loraserve${randomBytes(8).toString('hex')}`;
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields))
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  for (const [filename, data] of Object.entries(files)) {
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
      ),
    );
    parts.push(Buffer.from(data));
    parts.push(Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(parts), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

/** Uploads a PEFT folder's two files as adapter `name` (POST /v1/adapters); the response's status code. */
export async function uploadAdapterDir(app: App, name: string, dir: string, headers: Record<string, string> = {}): Promise<number> {
  const files = Object.fromEntries(['adapter_config.json', 'adapter_model.safetensors'].map((f) => [f, readFileSync(join(dir, f))]));
  const body = multipart({ name }, files);
  return (await app.inject({ method: 'POST', url: '/v1/adapters', payload: body.payload, headers: { ...body.headers, ...headers } }))
    .statusCode;
}
