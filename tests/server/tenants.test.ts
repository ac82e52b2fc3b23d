import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { multipart } from '../helpers/multipart.js';
import { loadHfModel } from '../../src/model/index.js';

const KEYS = {
  keys: [
    { key: 'sk-admin-0123456789', admin: true },
    { key: 'sk-acme-0123456789', tenant: 'acme', adapters: ['acme-*'] },
    { key: 'sk-beta-0123456789', tenant: 'beta', adapters: ['beta-*', 'shared'] },
  ],
};
const auth = (key: string) => ({ authorization: `Bearer ${key}` });
const ADMIN = KEYS.keys[0]!.key;
const ACME = KEYS.keys[1]!.key;
const BETA = KEYS.keys[2]!.key;

describe('tenant matrix: two tenants and an admin × every endpoint × every adapter', () => {
  let s: TestServer;
  let files: Record<string, Buffer>;
  const adapters = ['acme-a', 'beta-b', 'shared'];
  const visible: Record<string, string[]> = { [ADMIN]: adapters, [ACME]: ['acme-a'], [BETA]: ['beta-b', 'shared'] };

  before(async () => {
    s = await startTestServer({}, { keys: KEYS });
    const dir = join(tempDir(), 'ad');
    const model = loadHfModel(s.modelDir);
    await writeRandomAdapter(dir, model, { r: 4, lora_alpha: 8, target_modules: ['q_proj'] }, 3);
    model.weights.close();
    files = {
      'adapter_config.json': readFileSync(join(dir, 'adapter_config.json')),
      'adapter_model.safetensors': readFileSync(join(dir, 'adapter_model.safetensors')),
    };
    for (const name of adapters) {
      const { payload, headers } = multipart({ name }, files);
      assert.equal(
        (await s.app.inject({ method: 'POST', url: '/v1/adapters', payload, headers: { ...headers, ...auth(ADMIN) } })).statusCode,
        201,
      );
    }
  });
  after(() => s.close());

  const endpoints: Array<[string, (name: string, key: string) => Promise<{ statusCode: number; body: string }>]> = [
    [
      'chat',
      (name, key) =>
        s.app.inject({
          method: 'POST',
          url: '/v1/chat/completions',
          headers: auth(key),
          payload: { model: name, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
        }),
    ],
    [
      'completions',
      (name, key) =>
        s.app.inject({ method: 'POST', url: '/v1/completions', headers: auth(key), payload: { model: name, prompt: 'hi', max_tokens: 2 } }),
    ],
    ['get model', (name, key) => s.app.inject({ method: 'GET', url: `/v1/models/${name}`, headers: auth(key) })],
    ['get adapter', (name, key) => s.app.inject({ method: 'GET', url: `/v1/adapters/${name}`, headers: auth(key) })],
    ['load', (name, key) => s.app.inject({ method: 'POST', url: `/v1/adapters/${name}/load`, headers: auth(key) })],
    ['unload', (name, key) => s.app.inject({ method: 'POST', url: `/v1/adapters/${name}/unload`, headers: auth(key) })],
  ];

  for (const [key, who] of [
    [ADMIN, 'admin'],
    [ACME, 'acme'],
    [BETA, 'beta'],
  ] as const) {
    for (const [endpoint, call] of endpoints) {
      for (const name of adapters) {
        const allowed = visible[key]!.includes(name);
        it(`${who} ${endpoint} ${name} → ${allowed ? 200 : 404}`, async () => {
          const r = await call(name, key);
          assert.equal(r.statusCode, allowed ? 200 : 404, r.body);
          if (!allowed) {
            for (const hidden of adapters.filter((a) => !visible[key]!.includes(a) && a !== name))
              assert.ok(!r.body.includes(hidden), `404 body must not reveal ${hidden}`);
          }
        });
      }
    }

    it(`${who} lists only its adapters and the base model`, async () => {
      const list = (await s.app.inject({ method: 'GET', url: '/v1/adapters', headers: auth(key) }))
        .json()
        .data.map((a: { id: string }) => a.id);
      assert.deepEqual(list, visible[key]);
      const models = (await s.app.inject({ method: 'GET', url: '/v1/models', headers: auth(key) }))
        .json()
        .data.map((m: { id: string }) => m.id);
      assert.deepEqual(models, [s.serving.baseId, ...visible[key]!]);
    });

    it(`${who} may use the base model`, async () => {
      const r = await endpoints[0]![1](s.serving.baseId, key);
      assert.equal(r.statusCode, 200);
    });

    it(`${who} uploads inside its scope only`, async () => {
      const name = who === 'admin' ? 'anything-new' : `${who}-new`;
      const { payload, headers } = multipart({ name }, files);
      assert.equal(
        (await s.app.inject({ method: 'POST', url: '/v1/adapters', payload, headers: { ...headers, ...auth(key) } })).statusCode,
        201,
      );
      if (who !== 'admin') {
        const outside = multipart({ name: 'zeta-x' }, files);
        const r = await s.app.inject({
          method: 'POST',
          url: '/v1/adapters',
          payload: outside.payload,
          headers: { ...outside.headers, ...auth(key) },
        });
        assert.equal(r.statusCode, 403);
        assert.equal(r.json().error.code, 'forbidden');
      }
      const del = await s.app.inject({ method: 'DELETE', url: `/v1/adapters/${name}`, headers: auth(key) });
      assert.equal(del.statusCode, 200);
    });

    it(`${who} deletes only what it can see`, async () => {
      for (const name of adapters.filter((a) => !visible[key]!.includes(a))) {
        assert.equal((await s.app.inject({ method: 'DELETE', url: `/v1/adapters/${name}`, headers: auth(key) })).statusCode, 404);
      }
    });

    it(`${who} ${who === 'admin' ? 'may' : 'may not'} use the vLLM path-loading aliases`, async () => {
      const r = await s.app.inject({
        method: 'POST',
        url: '/v1/unload_lora_adapter',
        headers: auth(key),
        payload: { lora_name: 'does-not-exist' },
      });
      assert.equal(r.statusCode, who === 'admin' ? 404 : 403);
    });
  }

  it('no key and a wrong key get 401 on every /v1 endpoint; probes need none', async () => {
    for (const [method, url] of [
      ['GET', '/v1/models'],
      ['GET', '/v1/adapters'],
      ['POST', '/v1/chat/completions'],
      ['DELETE', '/v1/adapters/shared'],
    ] as const) {
      for (const headers of [{}, auth('sk-wrong-0123456789')]) {
        const r = await s.app.inject({ method, url, headers, payload: method === 'POST' ? {} : undefined });
        assert.equal(r.statusCode, 401, `${method} ${url}`);
        assert.equal(r.json().error.code, 'invalid_api_key');
      }
    }
    for (const url of ['/health', '/ready', '/metrics', '/docs/json'])
      assert.equal((await s.app.inject({ method: 'GET', url })).statusCode, 200, url);
  });

  it('unknown /v1 paths sit behind the key too; unknown paths elsewhere are plain 404s', async () => {
    assert.equal((await s.app.inject({ method: 'GET', url: '/v1/nothing' })).statusCode, 401);
    const withKey = await s.app.inject({ method: 'GET', url: '/v1/nothing', headers: auth(ADMIN) });
    assert.equal(withKey.statusCode, 404);
    assert.equal(withKey.json().error.code, 'not_found');
    assert.equal((await s.app.inject({ method: 'GET', url: '/nothing' })).statusCode, 404);
  });
});
