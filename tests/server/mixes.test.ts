import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../src/engine/index.js';
import { loadHfModel } from '../../src/model/index.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { multipart } from '../helpers/multipart.js';

const KEYS = {
  keys: [
    { key: 'sk-admin-0123456789', admin: true },
    { key: 'sk-acme-0123456789', tenant: 'acme', adapters: ['acme-*'] },
  ],
};
const ADMIN = { authorization: `Bearer ${KEYS.keys[0]!.key}` };
const ACME = { authorization: `Bearer ${KEYS.keys[1]!.key}` };
const MESSAGES = [{ role: 'user', content: 'what can you do' }];

/** Weighted adapter mixes over HTTP: LoRAX's `adapters` field and saved mixes, checked against the engine itself. */
describe('adapter mixes over the API', () => {
  let s: TestServer;
  const dirs: Record<string, string> = {};
  before(async () => {
    s = await startTestServer({ slots: 3, maxMixAdapters: 2, maxTokens: 12 }, { keys: KEYS });
    const model = loadHfModel(s.modelDir);
    const fields: Record<string, Record<string, unknown>> = {
      'acme-medical': { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj', 'o_proj'] },
      'acme-legal': { r: 8, lora_alpha: 16, target_modules: 'all-linear' },
      'acme-dora': { r: 4, lora_alpha: 8, use_dora: true, target_modules: ['q_proj', 'v_proj'] },
      other: { r: 4, lora_alpha: 8, target_modules: ['q_proj'] },
    };
    let seed = 90;
    for (const [name, f] of Object.entries(fields)) {
      dirs[name] = join(tempDir(), name);
      await writeRandomAdapter(dirs[name]!, model, f, seed++);
      const files = {
        'adapter_config.json': readFileSync(join(dirs[name]!, 'adapter_config.json')),
        'adapter_model.safetensors': readFileSync(join(dirs[name]!, 'adapter_model.safetensors')),
      };
      const { payload, headers } = multipart({ name }, files);
      assert.equal(
        (await s.app.inject({ method: 'POST', url: '/v1/adapters', payload, headers: { ...headers, ...ADMIN } })).statusCode,
        201,
      );
    }
    model.weights.close();
  });
  after(() => s.close());
  const post = (url: string, payload: unknown, headers = ACME) =>
    s.app.inject({ method: 'POST', url, payload: payload as object, headers });
  const chat = (extra: Record<string, unknown>, headers = ACME) =>
    post('/v1/chat/completions', { model: 'tiny-llama', messages: MESSAGES, temperature: 0, ...extra }, headers);

  /** The greedy answer an engine of our own gives for the same adapter files and mix. */
  async function expected(mix: Array<[string, number]>): Promise<string> {
    const engine = await Engine.create({ modelDir: s.modelDir, slots: 3, maxRank: 16 });
    try {
      const adapters = mix.map(([name, weight], i) => {
        engine.slots!.write(
          i + 1,
          engine.parseAdapter(
            readFileSync(join(dirs[name]!, 'adapter_config.json'), 'utf8'),
            readFileSync(join(dirs[name]!, 'adapter_model.safetensors')),
          ),
        );
        return { slot: i + 1, weight };
      });
      const gen = engine.generate({
        promptTokens: engine.tokenizer.applyChatTemplate(MESSAGES),
        adapters,
        maxTokens: 12,
        sampling: { temperature: 0 },
      });
      return (await gen.result).text;
    } finally {
      await engine.close();
    }
  }

  it('"adapters" serves the weighted mix: the engine\'s answer for that mix, labelled with model', async () => {
    const r = await chat({
      adapters: [
        { name: 'acme-medical', weight: 0.7 },
        { name: 'acme-legal', weight: 0.3 },
      ],
    });
    assert.equal(r.statusCode, 200, r.body);
    assert.equal(r.json().model, 'tiny-llama');
    assert.equal(
      r.json().choices[0].message.content,
      await expected([
        ['acme-medical', 0.7],
        ['acme-legal', 0.3],
      ]),
    );
    // Text completions take the field too.
    const t = await post('/v1/completions', {
      model: 'tiny-llama',
      prompt: 'hello',
      max_tokens: 4,
      temperature: 0,
      adapters: [{ name: 'acme-legal', weight: 0.5 }],
    });
    assert.equal(t.statusCode, 200, t.body);
  });

  it('a saved mix behaves like an adapter: /v1/models lists it and chat serves the same answer as the explicit mix', async () => {
    const members = [
      { name: 'acme-medical', weight: 0.7 },
      { name: 'acme-legal', weight: 0.3 },
    ];
    const saved = await post('/v1/adapters/acme-blend/mix', { adapters: members });
    assert.equal(saved.statusCode, 201, saved.body);
    assert.deepEqual(saved.json().adapters, members);
    assert.equal((await post('/v1/adapters/acme-blend/mix', { adapters: members })).statusCode, 200, 'replacing answers 200');
    const models = (await s.app.inject({ method: 'GET', url: '/v1/models', headers: ACME })).json().data.map((m: { id: string }) => m.id);
    assert.ok(models.includes('acme-blend'));
    assert.equal((await s.app.inject({ method: 'GET', url: '/v1/models/acme-blend', headers: ACME })).json().parent, 'tiny-llama');
    const viaAlias = await chat({ model: 'acme-blend' });
    const explicit = await chat({ adapters: members });
    assert.equal(viaAlias.statusCode, 200, viaAlias.body);
    assert.equal(viaAlias.json().model, 'acme-blend');
    assert.equal(viaAlias.json().choices[0].message.content, explicit.json().choices[0].message.content);
    assert.deepEqual((await s.app.inject({ method: 'GET', url: '/v1/adapters/acme-blend/mix', headers: ACME })).json().adapters, members);
    // The name is taken: no adapter may be uploaded under it, and a mix may not take an adapter's name.
    const { payload, headers } = multipart(
      { name: 'acme-blend' },
      {
        'adapter_config.json': readFileSync(join(dirs['acme-legal']!, 'adapter_config.json')),
        'adapter_model.safetensors': readFileSync(join(dirs['acme-legal']!, 'adapter_model.safetensors')),
      },
    );
    assert.equal(
      (await s.app.inject({ method: 'POST', url: '/v1/adapters', payload, headers: { ...headers, ...ACME } })).json().error.code,
      'adapter_name_taken',
    );
    assert.equal((await post('/v1/adapters/acme-legal/mix', { adapters: members })).json().error.code, 'adapter_name_taken');
    // Deleted, it is gone from models and chat; its adapters stay.
    assert.equal((await s.app.inject({ method: 'DELETE', url: '/v1/adapters/acme-blend/mix', headers: ACME })).statusCode, 200);
    assert.equal((await chat({ model: 'acme-blend' })).statusCode, 404);
    assert.equal((await chat({ model: 'acme-legal' })).statusCode, 200);
  });

  it('refuses unknown, out-of-scope and duplicate names, non-finite weights, too many adapters and DoRA inside a mix', async () => {
    const refused = async (adapters: unknown, status: number, code: RegExp, message: RegExp, headers = ACME) => {
      const r = await chat({ adapters }, headers);
      assert.equal(r.statusCode, status, r.body);
      assert.match(r.json().error.code, code);
      assert.match(r.json().error.message, message);
    };
    await refused([{ name: 'acme-nope', weight: 1 }], 404, /adapter_not_found/, /"acme-nope" does not exist/);
    await refused([{ name: 'other', weight: 1 }], 404, /adapter_not_found/, /"other" does not exist/);
    await refused(
      [
        { name: 'acme-legal', weight: 0.5 },
        { name: 'acme-legal', weight: 0.5 },
      ],
      400,
      /invalid_adapter_mix/,
      /named twice/,
    );
    await refused(
      [
        { name: 'acme-legal', weight: 1 },
        { name: 'acme-medical', weight: 1 },
        { name: 'other', weight: 1 },
      ],
      400,
      /invalid_adapter_mix/,
      /at most 2/,
      ADMIN,
    );
    await refused(
      [
        { name: 'acme-dora', weight: 0.5 },
        { name: 'acme-legal', weight: 0.5 },
      ],
      400,
      /invalid_adapter_mix/,
      /DoRA adapter/,
    );
    await refused([], 400, /./, /adapters/);
    // JSON cannot spell Infinity, but 1e999 parses to it; the schema refuses it before the service does.
    const r = await s.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      headers: { ...ACME, 'content-type': 'application/json' },
      payload: `{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"adapters":[{"name":"acme-legal","weight":1e999}]}`,
    });
    assert.equal(r.statusCode, 400, r.body);
    assert.match(r.json().error.message, /adapters\[0\]\.weight must be a number/);
    // A saved mix is checked the same way, and a tenant cannot save one outside its scope.
    assert.equal((await post('/v1/adapters/acme-x/mix', { adapters: [{ name: 'other', weight: 1 }] })).statusCode, 404);
    assert.equal((await post('/v1/adapters/beta-x/mix', { adapters: [{ name: 'acme-legal', weight: 1 }] })).statusCode, 403);
    // DoRA alone is served as its own model.
    assert.equal((await chat({ model: 'acme-dora' })).statusCode, 200);
  });
});
