import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { multipart } from '../helpers/multipart.js';
import { Expected } from '../helpers/expected.js';
import { brokenSafetensors } from '../helpers/broken-safetensors.js';
import { loadHfModel, encodeSafetensors } from '../../src/model/index.js';
import { peftConfig } from '../../src/lora/index.js';

const files = (dir: string) => ({
  'adapter_config.json': readFileSync(join(dir, 'adapter_config.json')),
  'adapter_model.safetensors': readFileSync(join(dir, 'adapter_model.safetensors')),
});

async function tarOf(
  entries: Array<{ name: string; data?: Buffer; type?: 'file' | 'symlink'; linkname?: string }>,
  gzip: boolean,
): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) pack.entry({ name: e.name, type: e.type ?? 'file', linkname: e.linkname }, e.data ?? Buffer.alloc(0));
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  const raw = Buffer.concat(chunks);
  return gzip ? gzipSync(raw) : raw;
}

describe('adapter lifecycle over HTTP', () => {
  let s: TestServer;
  let expected: Expected;
  let dirA: string;
  let dirB: string;
  const messages = [{ role: 'user', content: '환불 규정이 어떻게 되나요?' }];
  const chat = (model: string) =>
    s.app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { model, messages, max_tokens: 12, temperature: 0 } });
  const upload = (name: string, f: Record<string, Uint8Array | string>) => {
    const { payload, headers } = multipart({ name }, f);
    return s.app.inject({ method: 'POST', url: '/v1/adapters', payload, headers });
  };
  const storeListing = () => readdirSync(s.adaptersDir).sort();

  before(async () => {
    s = await startTestServer({ uploadBytes: 256 * 1024 });
    expected = await Expected.create(s.modelDir);
    const model = loadHfModel(s.modelDir);
    dirA = join(tempDir(), 'a');
    dirB = join(tempDir(), 'b');
    await writeRandomAdapter(dirA, model, { r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'] }, 1);
    await writeRandomAdapter(dirB, model, { r: 4, lora_alpha: 8, target_modules: 'all-linear' }, 2);
    model.weights.close();
  });
  after(async () => {
    await s.close();
    await expected.close();
  });

  it('upload → chat → replace → chat → delete, each answer from the right weights', async () => {
    const [wantBase, wantA, wantB] = [
      await expected.answer(null, messages, 12),
      await expected.answer(dirA, messages, 12),
      await expected.answer(dirB, messages, 12),
    ];
    assert.notEqual(wantA, wantBase);
    assert.notEqual(wantA, wantB);

    let r = await upload('support', files(dirA));
    assert.equal(r.statusCode, 201, r.body);
    assert.equal(r.json().id, 'support');
    assert.equal(r.json().r, 8);
    assert.deepEqual(r.json().target_modules, ['q_proj', 'v_proj']);
    assert.equal(r.json().tier, 'disk');
    r = await chat('support');
    assert.equal(r.statusCode, 200, r.body);
    assert.equal(r.json().model, 'support');
    assert.equal(r.json().choices[0].message.content, wantA);
    assert.equal((await s.app.inject({ method: 'GET', url: '/v1/adapters/support' })).json().tier, 'device');
    assert.equal((await chat(s.serving.baseId)).json().choices[0].message.content, wantBase);

    r = await upload('support', files(dirB));
    assert.equal(r.statusCode, 200, 'a replacement answers 200');
    assert.equal(r.json().r, 4);
    assert.equal((await chat('support')).json().choices[0].message.content, wantB);

    r = await s.app.inject({ method: 'DELETE', url: '/v1/adapters/support' });
    assert.deepEqual(r.json(), { id: 'support', object: 'adapter', deleted: true });
    r = await chat('support');
    assert.equal(r.statusCode, 404);
    assert.equal(r.json().error.code, 'model_not_found');
    assert.deepEqual(storeListing(), []);
  });

  it('a request running on the old weights finishes on them while a replacement lands', async () => {
    assert.equal((await upload('swap', files(dirA))).statusCode, 201);
    const long = { model: 'swap', messages, max_tokens: 40, temperature: 0 };
    const wantOld = await expected.answer(dirA, messages, 40);
    const running = s.app.inject({ method: 'POST', url: '/v1/chat/completions', payload: long });
    while (s.serving.engine.scheduler.stats.running === 0) await new Promise((r) => setImmediate(r));
    assert.equal((await upload('swap', files(dirB))).statusCode, 200);
    assert.equal((await running).json().choices[0].message.content, wantOld);
    assert.equal((await chat('swap')).json().choices[0].message.content, await expected.answer(dirB, messages, 12));
  });

  it('accepts a .tar and a .tar.gz holding the two files (in a folder too)', async () => {
    const f = files(dirA);
    for (const [name, gzip] of [
      ['from-tar', false],
      ['from-tgz', true],
    ] as const) {
      const archive = await tarOf(
        [
          { name: 'adapter/README.md', data: Buffer.from('x') },
          { name: 'adapter/adapter_config.json', data: f['adapter_config.json'] },
          { name: 'adapter/adapter_model.safetensors', data: f['adapter_model.safetensors'] },
        ],
        gzip,
      );
      const r = await upload(name, { [gzip ? 'a.tar.gz' : 'a.tar']: archive });
      assert.equal(r.statusCode, 201, r.body);
      assert.equal((await chat(name)).json().choices[0].message.content, await expected.answer(dirA, messages, 12));
    }
  });

  it('load and unload move an adapter between tiers; unload leaves it on disk', async () => {
    assert.equal((await upload('tiers', files(dirA))).statusCode, 201);
    let r = await s.app.inject({ method: 'POST', url: '/v1/adapters/tiers/load' });
    assert.equal(r.json().tier, 'device');
    assert.equal(typeof r.json().slot, 'number');
    r = await s.app.inject({ method: 'POST', url: '/v1/adapters/tiers/unload' });
    assert.equal(r.json().tier, 'disk');
    assert.equal(r.json().slot, null);
    assert.ok((await s.app.inject({ method: 'GET', url: '/v1/adapters' })).json().data.some((a: { id: string }) => a.id === 'tiers'));
  });

  describe('bad uploads get a 4xx naming the reason and leave the store unchanged', () => {
    const config = () => JSON.stringify(peftConfig({ r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'] }));
    const cases: Array<[string, () => Promise<{ statusCode: number; json(): any }>, number, string, RegExp]> = [];
    for (const [rule, { bytes, message }] of Object.entries(brokenSafetensors())) {
      cases.push([
        `safetensors: ${rule}`,
        () => upload('bad', { 'adapter_config.json': config(), 'adapter_model.safetensors': bytes }),
        400,
        'invalid_safetensors',
        message,
      ]);
    }
    cases.push(
      [
        'config that is not JSON',
        () => upload('bad', { 'adapter_config.json': '{oops', 'adapter_model.safetensors': files(dirA)['adapter_model.safetensors'] }),
        422,
        'invalid_adapter_config',
        /not valid JSON/,
      ],
      [
        'an adapter for another base model',
        () =>
          upload('bad', {
            'adapter_config.json': config(),
            'adapter_model.safetensors': encodeSafetensors({
              'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': {
                dtype: 'F32',
                shape: [8, 64],
                data: new Float32Array(8 * 64),
              },
              'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight': {
                dtype: 'F32',
                shape: [64, 8],
                data: new Float32Array(8 * 64),
              },
            }),
          }),
        422,
        'adapter_base_mismatch',
        /another base model/,
      ],
      ['a name with path traversal', () => upload('../evil', files(dirA)), 400, 'invalid_adapter_name', /invalid/],
      ['an absolute-path name', () => upload('/etc/x', files(dirA)), 400, 'invalid_adapter_name', /invalid/],
      ['an upper-case name', () => upload('Bad', files(dirA)), 400, 'invalid_adapter_name', /invalid/],
      [
        'a missing weights file',
        () => upload('bad', { 'adapter_config.json': config() }),
        400,
        'invalid_upload',
        /lacks adapter_model\.safetensors/,
      ],
      ['an unexpected file', () => upload('bad', { 'model.bin': 'x', ...files(dirA) }), 400, 'invalid_upload', /unexpected file/],
      [
        'a body over the upload limit',
        () => upload('bad', { 'adapter_config.json': config(), 'adapter_model.safetensors': new Uint8Array(300 * 1024) }),
        413,
        'payload_too_large',
        /./,
      ],
      [
        'an archive with a symlink',
        async () =>
          upload('bad', { 'a.tar': await tarOf([{ name: 'adapter_config.json', type: 'symlink', linkname: '/etc/passwd' }], false) }),
        400,
        'invalid_upload',
        /only regular files/,
      ],
      [
        'an archive entry climbing out',
        async () => upload('bad', { 'a.tar': await tarOf([{ name: '../adapter_config.json', data: Buffer.from(config()) }], false) }),
        400,
        'invalid_upload',
        /outside the archive/,
      ],
      [
        'not multipart at all',
        () => s.app.inject({ method: 'POST', url: '/v1/adapters', payload: { name: 'bad' } }),
        400,
        'invalid_upload',
        /multipart/,
      ],
    );
    for (const [what, send, status, code, message] of cases) {
      it(what, async () => {
        const before = storeListing();
        const r = await send();
        assert.equal(r.statusCode, status, JSON.stringify(r.json()));
        assert.equal(r.json().error.code, code);
        assert.match(r.json().error.message, message);
        assert.deepEqual(storeListing(), before, 'store unchanged');
      });
    }
  });

  it('registers an adapter by path under --lora-root with the vLLM alias (load_inplace to replace), and refuses paths outside it', async () => {
    const root = tempDir();
    const inside = join(root, 'mine');
    mkdirSync(inside);
    for (const [f, d] of Object.entries(files(dirA))) writeFileSync(join(inside, f), d);
    s.serving.config.loraRoot = root;
    let r = await s.app.inject({ method: 'POST', url: '/v1/load_lora_adapter', payload: { lora_name: 'by-path', lora_path: 'mine' } });
    assert.equal(r.statusCode, 200, r.body);
    assert.match(r.body, /Success/);
    assert.equal((await chat('by-path')).json().choices[0].message.content, await expected.answer(dirA, messages, 12));
    // A name in use needs load_inplace (as vLLM); a replacement that fails validation leaves the old one serving.
    const other = join(root, 'other');
    mkdirSync(other);
    for (const [f, d] of Object.entries(files(dirB))) writeFileSync(join(other, f), d);
    r = await s.app.inject({ method: 'POST', url: '/v1/load_lora_adapter', payload: { lora_name: 'by-path', lora_path: 'other' } });
    assert.equal(r.statusCode, 409);
    assert.equal(r.json().error.code, 'adapter_name_taken');
    assert.match(r.json().error.message, /load_inplace/);
    const broken = join(root, 'broken');
    mkdirSync(broken);
    writeFileSync(join(broken, 'adapter_config.json'), '{"peft_type": "LORA", "r": 4, "target_modules": ["nope"]}');
    writeFileSync(join(broken, 'adapter_model.safetensors'), files(dirB)['adapter_model.safetensors']);
    r = await s.app.inject({
      method: 'POST',
      url: '/v1/load_lora_adapter',
      payload: { lora_name: 'by-path', lora_path: 'broken', load_inplace: true },
    });
    assert.equal(r.statusCode, 422, r.body);
    assert.equal((await chat('by-path')).json().choices[0].message.content, await expected.answer(dirA, messages, 12));
    r = await s.app.inject({
      method: 'POST',
      url: '/v1/load_lora_adapter',
      payload: { lora_name: 'by-path', lora_path: 'other', load_inplace: true },
    });
    assert.equal(r.statusCode, 200, r.body);
    assert.equal((await chat('by-path')).json().choices[0].message.content, await expected.answer(dirB, messages, 12));
    r = await s.app.inject({ method: 'POST', url: '/v1/unload_lora_adapter', payload: { lora_name: 'by-path', lora_int_id: 3 } });
    assert.equal(r.statusCode, 400, 'a field the server does not implement is refused, not ignored');
    assert.match(r.json().error.message, /lora_int_id is not a known field/);
    r = await s.app.inject({ method: 'POST', url: '/v1/load_lora_adapter', payload: { lora_name: 'escape', lora_path: '../../etc' } });
    assert.equal(r.statusCode, 403);
    assert.equal(r.json().error.code, 'path_outside_root');
    r = await s.app.inject({ method: 'POST', url: '/v1/unload_lora_adapter', payload: { lora_name: 'by-path' } });
    assert.equal(r.statusCode, 200);
    assert.equal((await chat('by-path')).statusCode, 404);
    assert.ok(readdirSync(inside).includes('adapter_model.safetensors'), 'files registered by path are never deleted');
  });
});
