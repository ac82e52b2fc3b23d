import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { loadHfModel } from '../../src/model/index.js';
import { CONFIG_FILE, WEIGHTS_FILE } from '../../src/lora/index.js';

// Found by the soak run: a finished load left its slot unpinned until the caller's continuation
// ran, so another adapter's load could take the slot in between and the first request then ran
// on the second adapter's weights.
describe('adapter cache: a loaded slot is pinned before anyone else can take it', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ slots: 1 });
    const model = loadHfModel(s.modelDir);
    for (const [i, name] of ['a', 'b'].entries()) {
      const dir = join(tempDir(), name);
      await writeRandomAdapter(dir, model, { r: 4, lora_alpha: 8, target_modules: ['q_proj'] }, 20 + i);
      await s.serving.store.put(name, { config: readFileSync(join(dir, CONFIG_FILE), 'utf8'), weights: readFileSync(join(dir, WEIGHTS_FILE)) });
    }
    model.weights.close();
    // Both parsed into the host tier, "a" left in the only slot, unpinned.
    await s.serving.cache.warm('b');
    await s.serving.cache.warm('a');
  });
  after(() => s.close());

  it('two acquires in the same tick: each lease holds the slot its own adapter is in', async () => {
    const cache = s.serving.cache;
    const forB = cache.acquire('b');
    const forA = cache.acquire('a');
    const b = await forB;
    assert.equal(cache.tierOf('b').slot, b.slot, 'the lease for "b" points at the slot holding "b"');
    b.release();
    const a = await forA;
    assert.equal(cache.tierOf('a').slot, a.slot, 'the lease for "a" points at the slot holding "a"');
    a.release();
  });
});
