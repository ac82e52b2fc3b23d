import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { multipart } from '../helpers/multipart.js';
import { loadHfModel } from '../../src/model/index.js';
import { ANONYMOUS_ADMIN } from '../../src/server/index.js';

describe('a server without adapter slots (--slots 0)', () => {
  let s: TestServer;
  let dir: string;
  before(async () => {
    s = await startTestServer({ slots: 0 });
    dir = join(tempDir(), 'ad');
    const model = loadHfModel(s.modelDir);
    await writeRandomAdapter(dir, model, { r: 4, lora_alpha: 8, target_modules: ['q_proj'] }, 3);
    model.weights.close();
  });
  after(() => s.close());
  const chat = (model: string) =>
    s.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
    });

  it('serves the base model and reports no slots', async () => {
    assert.equal((await chat(s.serving.baseId)).statusCode, 200);
    assert.match((await s.app.inject({ method: 'GET', url: '/metrics' })).body, /^loraserve_adapter_slots 0$/m);
  });

  it('refuses an upload with adapters_disabled before writing anything', async () => {
    const { payload, headers } = multipart(
      { name: 'nope' },
      {
        'adapter_config.json': readFileSync(join(dir, 'adapter_config.json')),
        'adapter_model.safetensors': readFileSync(join(dir, 'adapter_model.safetensors')),
      },
    );
    const r = await s.app.inject({ method: 'POST', url: '/v1/adapters', payload, headers });
    assert.equal(r.statusCode, 400);
    assert.equal(r.json().error.code, 'adapters_disabled');
    assert.match(r.json().error.message, /--slots 0/);
    assert.ok(!existsSync(join(s.adaptersDir, 'nope')));
  });

  it('an adapter already in the store answers adapters_disabled instead of waiting for a slot', async () => {
    cpSync(dir, join(s.adaptersDir, 'on-disk'), { recursive: true });
    const t = await startTestServer({ slots: 0, adaptersDir: s.adaptersDir, modelDir: s.modelDir });
    try {
      const r = await t.app.inject({
        method: 'POST',
        url: '/v1/chat/completions',
        payload: { model: 'on-disk', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
      });
      assert.equal(r.statusCode, 400);
      assert.equal(r.json().error.code, 'adapters_disabled');
      await assert.rejects(t.serving.adapters.warm(ANONYMOUS_ADMIN, 'on-disk'), { code: 'adapters_disabled' });
      assert.equal((await t.app.inject({ method: 'POST', url: '/v1/adapters/on-disk/load' })).json().error.code, 'adapters_disabled');
      const listed = (await t.app.inject({ method: 'GET', url: '/v1/adapters/on-disk' })).json();
      assert.equal(listed.tier, 'disk');
      assert.equal(listed.r, 4);
    } finally {
      await t.close();
    }
  });
});
