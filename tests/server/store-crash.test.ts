import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { FAULT_HOOKS, spawnServer, writeTinyModel, type ChildServer } from '../helpers/child-server.js';
import { tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { multipart } from '../helpers/multipart.js';
import { AdapterStore, CONFIG_FILE, WEIGHTS_FILE, type AdapterFiles } from '../../src/lora/index.js';
import { loadHfModel } from '../../src/model/index.js';

// Promise 2 (README, Reliability): kill -9 at any moment of an upload, replace or delete leaves
// the old or the new adapter, never a partial one, and the next start cleans up. One server
// process holds nine adapters at nine different points (fault-hooks.ts), then is killed.
describe('crash safety of the adapter store (kill -9)', () => {
  const POINTS: Record<string, string> = {
    'u-write': 'write',
    'u-rename-new': 'rename-new',
    'u-rm-old': 'rm-old',
    'r-write': 'write',
    'r-rename-old': 'rename-old',
    'r-rename-new': 'rename-new',
    'r-rm-old': 'rm-old',
    'd-rename': 'delete-rename',
    'd-rm': 'delete-rm',
  };
  /** What each adapter must be after the restart: the version before the crash or after it. */
  const EXPECTED: Record<string, 'old' | 'new' | 'absent'> = {
    'u-write': 'absent',
    'u-rename-new': 'absent',
    'u-rm-old': 'new',
    'r-write': 'old',
    'r-rename-old': 'old',
    'r-rename-new': 'old',
    'r-rm-old': 'new',
    'r-body': 'old',
    'd-rename': 'old',
    'd-rm': 'absent',
    keep: 'old',
  };
  let modelDir: string;
  let store: string;
  let oldFiles: AdapterFiles;
  let newFiles: AdapterFiles;
  const servers: ChildServer[] = [];
  after(() => Promise.all(servers.map((s) => s.stop())));

  before(async () => {
    const root = tempDir();
    modelDir = writeTinyModel(join(root, 'tiny-llama'));
    store = join(root, 'adapters');
    const model = loadHfModel(modelDir);
    const read = async (seed: number) => {
      const dir = join(root, `v${seed}`);
      await writeRandomAdapter(dir, model, { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'] }, seed);
      return { config: readFileSync(join(dir, CONFIG_FILE), 'utf8'), weights: readFileSync(join(dir, WEIGHTS_FILE)) };
    };
    oldFiles = await read(1);
    newFiles = await read(2);
    model.weights.close();
    const seeded = await AdapterStore.open(store);
    for (const name of Object.keys(EXPECTED)) if (!name.startsWith('u-')) await seeded.put(name, oldFiles);
  });

  it('leaves each adapter old or new, never partial, and the next start removes the leftovers', { timeout: 240_000 }, async () => {
    const s = await spawnServer(['--model', modelDir, '--adapters', store], {
      preload: [FAULT_HOOKS],
      env: {
        LORASERVE_TEST_PAUSE: Object.entries(POINTS)
          .map(([n, p]) => `${n}:${p}`)
          .join(','),
      },
    });
    servers.push(s);
    const upload = (name: string) => multipart({ name }, { [CONFIG_FILE]: newFiles.config, [WEIGHTS_FILE]: newFiles.weights });
    for (const [name, point] of Object.entries(POINTS)) {
      const { payload, headers } = upload(name);
      const sent = point.startsWith('delete')
        ? fetch(`${s.url}/v1/adapters/${name}`, { method: 'DELETE' })
        : fetch(`${s.url}/v1/adapters`, { method: 'POST', body: new Uint8Array(payload), headers });
      sent.catch(() => {});
    }
    // r-body: the upload's body stops halfway (the client stalls), so the crash hits mid-body.
    const partial = upload('r-body');
    const req = request(`${s.url}/v1/adapters`, {
      method: 'POST',
      headers: { ...partial.headers, 'content-length': String(partial.payload.length) },
    });
    req.on('error', () => {});
    req.write(partial.payload.subarray(0, partial.payload.length >> 1));
    await Promise.all(Object.entries(POINTS).map(([name, point]) => s.waitFor(new RegExp(`^PAUSED ${name} ${point}$`))));
    s.proc.kill('SIGKILL');
    assert.equal((await s.exited).signal, 'SIGKILL');
    req.destroy();

    // The crash left work half done: temp folders of all three kinds are on disk.
    const leftovers = readdirSync(store).filter((f) => f.startsWith('.'));
    for (const kind of ['.upload-', '.old-', '.deleted-'])
      assert.ok(
        leftovers.some((f) => f.startsWith(kind)),
        `${kind}* in ${leftovers.join(', ')}`,
      );

    const next = await spawnServer(['--model', modelDir, '--adapters', store]);
    servers.push(next);
    const repaired = JSON.parse(await next.waitFor(/finished writes a crash interrupted/));
    assert.deepEqual(repaired.restored, ['r-rename-new']);
    assert.equal(repaired.removed.length, leftovers.length - 1);
    assert.deepEqual(
      readdirSync(store).filter((f) => f.startsWith('.')),
      [],
    );

    const listed = (await (await fetch(`${next.url}/v1/adapters`)).json()).data.map((a: { id: string }) => a.id).sort();
    assert.deepEqual(
      listed,
      Object.keys(EXPECTED)
        .filter((n) => EXPECTED[n] !== 'absent')
        .sort(),
    );
    for (const [name, want] of Object.entries(EXPECTED)) {
      if (want === 'absent') continue;
      const files = want === 'old' ? oldFiles : newFiles;
      assert.equal(readFileSync(join(store, name, CONFIG_FILE), 'utf8'), files.config, `${name} config`);
      assert.ok(readFileSync(join(store, name, WEIGHTS_FILE)).equals(files.weights as Buffer), `${name} weights are the ${want} version`);
    }
    // Every surviving adapter loads and answers (its manifest matches its files).
    for (const name of listed) {
      const r = await fetch(`${next.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: name, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 }),
      });
      assert.equal(r.status, 200, `${name}: ${await r.text()}`);
    }
  });
});
