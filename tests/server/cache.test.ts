import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { uploadAdapterDir } from '../helpers/multipart.js';
import { Expected } from '../helpers/expected.js';
import { loadHfModel } from '../../src/model/index.js';
import { ANONYMOUS_ADMIN } from '../../src/server/index.js';

describe('three-tier adapter cache under concurrent load', () => {
  let s: TestServer;
  let expected: Expected;
  const names = ['a0', 'a1', 'a2', 'a3', 'a4', 'a5'];
  const dirs = new Map<string, string>();
  // Each adapter's host tensors take 8 KiB (4 modules × (32·8 + 8·32) floats): the host tier holds 2.
  const hostBytes = 20 * 1024;

  before(async () => {
    s = await startTestServer({ slots: 2, hostCacheBytes: hostBytes, maxBatch: 4 });
    expected = await Expected.create(s.modelDir);
    const model = loadHfModel(s.modelDir);
    for (const [i, name] of names.entries()) {
      const dir = join(tempDir(), name);
      await writeRandomAdapter(dir, model, { r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'] }, 10 + i);
      dirs.set(name, dir);
      assert.equal(await uploadAdapterDir(s.app, name, dir), 201);
    }
    model.weights.close();
  });
  after(async () => {
    await s.close();
    await expected.close();
  });

  it('6 adapters over 2 slots and a 2-adapter host tier: every answer comes from the adapter it named', async () => {
    const prompts = ['hello', '배송 언제 와요?', 'what is a lease?'];
    const want = new Map<string, string>();
    for (const name of names)
      for (const p of prompts) want.set(`${name}|${p}`, await expected.answer(dirs.get(name)!, [{ role: 'user', content: p }], 10));
    want.set(`base|hello`, await expected.answer(null, [{ role: 'user', content: 'hello' }], 10));
    const jobs: Array<Promise<void>> = [];
    for (let round = 0; round < 2; round++) {
      for (const name of [...names, 'base']) {
        for (const p of name === 'base' ? ['hello'] : prompts) {
          jobs.push(
            (async () => {
              const model = name === 'base' ? s.serving.baseId : name;
              const r = await s.app.inject({
                method: 'POST',
                url: '/v1/chat/completions',
                payload: { model, messages: [{ role: 'user', content: p }], max_tokens: 10, temperature: 0 },
              });
              assert.equal(r.statusCode, 200, r.body);
              assert.equal(r.json().model, model);
              assert.equal(r.json().choices[0].message.content, want.get(`${name}|${p}`), `${name} / ${p}`);
            })(),
          );
        }
      }
    }
    await Promise.all(jobs);
    const metrics = (await s.app.inject({ method: 'GET', url: '/metrics' })).body;
    const value = (line: RegExp) => Number(metrics.match(line)?.[1] ?? NaN);
    assert.ok(value(/loraserve_adapter_cache_evictions_total\{tier="device"\} (\d+)/) > 0, 'device evictions happened');
    assert.ok(value(/loraserve_adapter_cache_evictions_total\{tier="host"\} (\d+)/) > 0, 'host evictions happened');
    assert.ok(value(/loraserve_adapter_cache_hits_total\{tier="device"\} (\d+)/) > 0, 'device hits happened');
    await s.serving.engine.scheduler.idle();
    const occ = s.serving.adapters.occupancy();
    assert.ok(occ.used <= 2);
    assert.equal(occ.pinned, 0, 'every pin was released');
    assert.equal(occ.queued, 0);
    assert.ok(occ.hostBytes <= hostBytes, `host tier ${occ.hostBytes} ≤ ${hostBytes}`);
    assert.equal(s.serving.engine.scheduler.stats.kvFloats, 0, 'no KV cache left behind');
  });

  it('concurrent requests for a cold adapter trigger one load', async () => {
    await s.serving.adapters.unload(ANONYMOUS_ADMIN, 'a3');
    const before = (await s.app.inject({ method: 'GET', url: '/metrics' })).body.match(
      /loraserve_adapter_cache_misses_total\{tier="device"\} (\d+)/,
    )![1];
    await Promise.all(
      Array.from({ length: 4 }, () =>
        s.app.inject({
          method: 'POST',
          url: '/v1/chat/completions',
          payload: { model: 'a3', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 },
        }),
      ),
    );
    const afterCount = (await s.app.inject({ method: 'GET', url: '/metrics' })).body.match(
      /loraserve_adapter_cache_misses_total\{tier="device"\} (\d+)/,
    )![1];
    assert.equal(Number(afterCount) - Number(before), 1);
  });

  it('a failed load fails its waiters with the reason and caches nothing', async () => {
    const entry = (await s.serving.adapters.unload(ANONYMOUS_ADMIN, 'a4')).stored;
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(entry.dir, 'adapter_model.safetensors'), Buffer.alloc(4));
    const rs = await Promise.all(
      Array.from({ length: 3 }, () =>
        s.app.inject({
          method: 'POST',
          url: '/v1/chat/completions',
          payload: { model: 'a4', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 },
        }),
      ),
    );
    for (const r of rs) {
      assert.equal(r.statusCode, 500);
      assert.equal(r.json().error.code, 'adapter_corrupted');
    }
    assert.equal((await s.serving.adapters.describe(ANONYMOUS_ADMIN, 'a4')).tier, 'disk');
    assert.equal(s.serving.adapters.occupancy().pinned, 0);
    // Other adapters are unaffected.
    assert.equal(
      (
        await s.app.inject({
          method: 'POST',
          url: '/v1/chat/completions',
          payload: { model: 'a0', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 },
        })
      ).statusCode,
      200,
    );
  });
});
