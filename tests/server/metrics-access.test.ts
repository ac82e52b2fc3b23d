import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { multipart } from '../helpers/multipart.js';
import { listenMetrics } from '../../src/server/index.js';
import { loadHfModel } from '../../src/model/index.js';
import { CONFIG_FILE, WEIGHTS_FILE } from '../../src/lora/index.js';

// /metrics names adapters; --metrics-key and --metrics-port keep tenants from reading it.
describe('metrics access', () => {
  const ADMIN = 'sk-admin-0000';
  const TENANT = 'sk-tenant-0000';
  const METRICS = 'scrape-key-0000';
  const keys = {
    keys: [
      { key: ADMIN, admin: true },
      { key: TENANT, tenant: 'acme', adapters: ['acme-*'] },
    ],
  };
  let keyed: TestServer;
  let split: TestServer;

  before(async () => {
    keyed = await startTestServer({ metricsKey: METRICS }, { keys });
    split = await startTestServer({ metricsPort: 0 });
    const dir = join(tempDir(), 'a');
    const model = loadHfModel(keyed.modelDir);
    await writeRandomAdapter(dir, model, { r: 4, lora_alpha: 8, target_modules: ['q_proj'] }, 4);
    model.weights.close();
    const { payload, headers } = multipart(
      { name: 'secret-adapter' },
      { [CONFIG_FILE]: readFileSync(join(dir, CONFIG_FILE)), [WEIGHTS_FILE]: readFileSync(join(dir, WEIGHTS_FILE)) },
    );
    assert.equal(
      (await keyed.app.inject({ method: 'POST', url: '/v1/adapters', payload, headers: { ...headers, authorization: `Bearer ${ADMIN}` } }))
        .statusCode,
      201,
    );
    assert.equal(
      (await keyed.app.inject({ method: 'POST', url: '/v1/adapters/secret-adapter/load', headers: { authorization: `Bearer ${ADMIN}` } }))
        .statusCode,
      200,
    );
  });
  after(async () => {
    await keyed.close();
    await split.close();
  });

  const scrape = (s: TestServer, authorization?: string) =>
    s.app.inject({ method: 'GET', url: '/metrics', headers: authorization ? { authorization } : {} });

  it('with --metrics-key, /metrics answers only that key or an admin key', async () => {
    assert.equal((await scrape(keyed)).statusCode, 401);
    const tenant = await scrape(keyed, `Bearer ${TENANT}`);
    assert.equal(tenant.statusCode, 403);
    assert.doesNotMatch(tenant.body, /secret-adapter/);
    assert.equal((await scrape(keyed, 'Bearer not-a-key-at-all')).statusCode, 403);
    for (const key of [METRICS, ADMIN]) {
      const r = await scrape(keyed, `Bearer ${key}`);
      assert.equal(r.statusCode, 200);
      assert.match(r.body, /running_lora_adapters="secret-adapter"/);
    }
  });

  it('with --metrics-port, /metrics leaves the API listener for its own', async () => {
    assert.equal((await scrape(split)).statusCode, 404);
    const metrics = await listenMetrics(split.serving, '127.0.0.1', 0);
    try {
      const r = await fetch(metrics.url);
      assert.equal(r.status, 200);
      assert.match(await r.text(), /vllm:num_requests_waiting/);
      assert.equal((await fetch(metrics.url.replace('/metrics', '/v1/models'))).status, 404);
    } finally {
      await metrics.close();
    }
  });

  it('by default /metrics stays open (for a scraper on loopback)', async () => {
    const open = await startTestServer();
    try {
      assert.equal((await scrape(open)).statusCode, 200);
    } finally {
      await open.close();
    }
  });
});
