import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { multipart } from '../helpers/multipart.js';
import { loadHfModel } from '../../src/model/index.js';
import { CONFIG_FILE, WEIGHTS_FILE } from '../../src/lora/index.js';
import { ANONYMOUS_ADMIN } from '../../src/server/index.js';

// Promise 3 (README, Reliability): an adapter file changed on disk after upload fails only the
// requests that need it, with adapter_corrupted; the server stays healthy; nothing of it stays
// cached; the failure is logged and counted in /metrics. A re-upload heals it.
describe('corruption at rest', () => {
  let s: TestServer;
  const logs: string[] = [];
  let files: { config: Buffer; weights: Buffer };
  const names = ['good', 'truncated', 'bitflip', 'deleted', 'config-flip', 'cached'];

  before(async () => {
    s = await startTestServer({ slots: 2 }, { logLines: logs });
    const dir = join(tempDir(), 'a');
    const model = loadHfModel(s.modelDir);
    await writeRandomAdapter(dir, model, { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'] }, 3);
    model.weights.close();
    files = { config: readFileSync(join(dir, CONFIG_FILE)), weights: readFileSync(join(dir, WEIGHTS_FILE)) };
    for (const name of names) assert.equal((await upload(name)).statusCode, 201);
  });
  after(() => s.close());

  const upload = (name: string) => {
    const { payload, headers } = multipart({ name }, { [CONFIG_FILE]: files.config, [WEIGHTS_FILE]: files.weights });
    return s.app.inject({ method: 'POST', url: '/v1/adapters', payload, headers });
  };
  const chat = (model: string) =>
    s.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 },
    });
  const path = (name: string, file: string) => join(s.adaptersDir, name, file);

  it('fails only the damaged adapters, with a clear code, logs and counts them, and keeps serving', async () => {
    // "cached" is loaded before its file is damaged: the validated copy in memory keeps serving.
    assert.equal((await chat('cached')).statusCode, 200);
    assert.equal((await chat('good')).statusCode, 200);
    const weights = readFileSync(path('bitflip', WEIGHTS_FILE));
    weights[weights.length - 5]! ^= 0x10; // a bit in the tensor data: still parses, only the seal catches it
    writeFileSync(path('bitflip', WEIGHTS_FILE), weights);
    truncateSync(path('truncated', WEIGHTS_FILE), files.weights.length >> 1);
    rmSync(path('deleted', WEIGHTS_FILE));
    writeFileSync(path('config-flip', CONFIG_FILE), files.config.toString('utf8').replace('"r": 4', '"r": 5'));
    writeFileSync(path('cached', WEIGHTS_FILE), Buffer.alloc(16));
    const hostBytes = s.serving.adapters.occupancy().hostBytes;

    const damaged = ['truncated', 'bitflip', 'deleted', 'config-flip'];
    const answers = await Promise.all([...damaged, 'good', 'cached', s.serving.baseId].map(chat));
    for (const [i, name] of damaged.entries()) {
      assert.equal(answers[i]!.statusCode, 500, name);
      const error = answers[i]!.json().error;
      assert.equal(error.code, 'adapter_corrupted', name);
      assert.match(error.message, new RegExp(`adapter "${name}" is damaged on disk: .*; upload the adapter again`));
      assert.equal((await s.serving.adapters.describe(ANONYMOUS_ADMIN, name)).tier, 'disk', `${name} is in no cache`);
    }
    assert.match(answers[1]!.json().error.message, /adapter_model\.safetensors has a different SHA-256 than at upload/);
    assert.match(answers[0]!.json().error.message, /adapter_model\.safetensors is \d+ bytes, \d+ at upload/);
    for (const r of answers.slice(damaged.length)) assert.equal(r.statusCode, 200, r.body);
    assert.equal(s.serving.adapters.occupancy().hostBytes, hostBytes, 'no damaged adapter entered the host cache');
    assert.equal(s.serving.adapters.occupancy().pinned, 0);

    for (const probe of ['/health', '/ready']) assert.equal((await s.app.inject({ method: 'GET', url: probe })).statusCode, 200);
    const metrics = (await s.app.inject({ method: 'GET', url: '/metrics' })).body;
    for (const name of damaged)
      assert.match(metrics, new RegExp(`loraserve_adapter_load_failures_total\\{adapter="${name}",code="adapter_corrupted"\\} 1`));
    const logged = logs.map((l) => JSON.parse(l)).filter((l) => l.level >= 50 && /is damaged on disk/.test(l.err?.message ?? ''));
    assert.deepEqual(new Set(logged.map((l) => /adapter "([^"]+)"/.exec(l.err.message)![1])), new Set(damaged));
  });

  it('a re-upload heals a damaged adapter', async () => {
    assert.equal((await upload('bitflip')).statusCode, 200);
    assert.equal((await chat('bitflip')).statusCode, 200);
  });
});
