import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Engine } from '../../src/engine/index.js';
import { writeRandomModel } from '../../src/testing/index.js';
import { tempDir } from '../helpers/adapters.js';

// Pausing on the real model: a row paused for another tenant keeps its cache and, resumed, produces
// exactly the greedy tokens it produces alone.
describe('pausing a running row for another tenant (real model)', () => {
  let engine: Engine;
  before(async () => {
    const tiny = writeRandomModel(join(tempDir(), 'model'), { family: 'llama', seed: 43 });
    engine = await Engine.create({ modelDir: tiny.dir, slots: 0, maxBatch: 2 });
  });
  after(() => engine.close());

  it('paused and resumed rows produce exactly the text they produce alone', async () => {
    const specs = [
      { tenant: 'a', p: 'the flood one', n: 40 },
      { tenant: 'a', p: 'and the flood two', n: 40 },
      { tenant: 'b', p: 'a quiet question', n: 12 },
    ];
    const run = (s: (typeof specs)[number]) =>
      engine.generate({
        promptTokens: engine.tokenizer.encode(s.p),
        maxTokens: s.n,
        ignoreEos: true,
        sampling: { temperature: 0 },
        tenant: s.tenant,
      });
    const alone: string[] = [];
    for (const s of specs) alone.push((await run(s).result).text);
    const before = engine.scheduler.tenants().find((t) => t.tenant === 'a')?.preemptions ?? 0;

    const flood = specs.slice(0, 2).map(run);
    const target = engine.scheduler.steps.decode + 5;
    while (engine.scheduler.steps.decode < target) await new Promise((r) => setImmediate(r));
    const quiet = run(specs[2]!);
    const together = await Promise.all([...flood, quiet].map(async (g) => (await g.result).text));
    assert.deepEqual(together, alone);
    assert.ok(engine.scheduler.tenants().find((t) => t.tenant === 'a')!.preemptions > before, 'a flood row was paused');
  });
});
