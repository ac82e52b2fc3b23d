/** The multipart body builder lives in src/testing, where the cluster driver uses it too. */
export { multipart } from '../../src/testing/index.js';

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { App } from '../../src/server/index.js';
import { multipart } from '../../src/testing/index.js';

/** Uploads a PEFT folder's two files as adapter `name` (POST /v1/adapters); the response's status code. */
export async function uploadAdapterDir(app: App, name: string, dir: string, headers: Record<string, string> = {}): Promise<number> {
  const files = Object.fromEntries(['adapter_config.json', 'adapter_model.safetensors'].map((f) => [f, readFileSync(join(dir, f))]));
  const body = multipart({ name }, files);
  return (await app.inject({ method: 'POST', url: '/v1/adapters', payload: body.payload, headers: { ...body.headers, ...headers } }))
    .statusCode;
}
