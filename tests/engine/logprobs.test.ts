import { createEngine } from '../helpers/backend.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Engine, TokenLogprob } from '../../src/engine/index.js';
import { writeRandomModel, type TinyModel } from '../../src/testing/index.js';
import { logSoftmax, referenceLogits, type RefLora } from '../helpers/reference.js';
import { readAdapter, tempDir, writeRandomAdapter } from '../helpers/adapters.js';

const TOL = 1e-4;

/** Checks one reported logprob (and its alternatives) against the reference log-softmax at that position. */
function checkAgainst(lp: TokenLogprob, ref: Float64Array, k: number, what: string): void {
  assert.ok(Math.abs(lp.logprob - ref[lp.token]!) < TOL, `${what}: ${lp.logprob} vs reference ${ref[lp.token]}`);
  const best = [...ref].sort((a, b) => b - a).slice(0, k);
  assert.equal(lp.top.length, k, `${what}: ${k} alternatives`);
  lp.top.forEach((t, i) => {
    assert.ok(Math.abs(t.logprob - best[i]!) < TOL, `${what}: alternative ${i}`);
    assert.ok(Math.abs(t.logprob - ref[t.token]!) < TOL, `${what}: alternative ${i} is the token it names`);
  });
}

describe('logprobs against the float64 reference forward pass', () => {
  let tiny: TinyModel;
  let engine: Engine;
  let lora: Map<string, RefLora>;
  before(async () => {
    tiny = writeRandomModel(join(tempDir(), 'base'), { family: 'llama', seed: 7 });
    // Small chunks so prompt logprobs cross chunk boundaries.
    engine = await createEngine({ modelDir: tiny.dir, slots: 2, maxRank: 8, prefillChunk: 4 });
    const dir = join(tempDir(), 'adapter');
    lora = (await writeRandomAdapter(dir, engine.model, { r: 8, lora_alpha: 16, target_modules: 'all-linear' }, 5)).ref;
    engine.slots!.write(1, readAdapter(dir, engine.model, 8));
  });
  after(() => engine.close());

  it('a base row and an adapter row in one batch: prompt and generated logprobs with top alternatives', async () => {
    const k = 5;
    const rows = [
      { prompt: [3, 14, 15, 92, 65, 35, 89, 79, 32], slot: 0 },
      { prompt: [27, 18, 28, 18, 28, 45], slot: 1 },
    ];
    const gens = rows.map((r) =>
      engine.generate({
        promptTokens: r.prompt,
        slot: r.slot,
        maxTokens: 4,
        sampling: { temperature: 0 },
        ignoreEos: true,
        logprobs: k,
        promptLogprobs: true,
      }),
    );
    const results = await Promise.all(gens.map((g) => g.result));
    for (const [i, r] of rows.entries()) {
      const res = results[i]!;
      const generated = res.logprobs!.map((l) => l.token);
      assert.equal(generated.length, 4);
      const ref = referenceLogits(tiny, [...r.prompt, ...generated], r.slot ? lora : new Map()).map(logSoftmax);
      assert.equal(res.promptLogprobs!.length, r.prompt.length);
      assert.equal(res.promptLogprobs![0], null, 'the first prompt token has no logprob');
      for (let p = 1; p < r.prompt.length; p++) {
        assert.equal(res.promptLogprobs![p]!.token, r.prompt[p]);
        checkAgainst(res.promptLogprobs![p]!, ref[p - 1]!, k, `row ${i} prompt token ${p}`);
      }
      res.logprobs!.forEach((lp, j) => {
        checkAgainst(lp, ref[r.prompt.length - 1 + j]!, k, `row ${i} generated token ${j}`);
        assert.equal(lp.token, lp.top[0]!.token, 'greedy picks the most likely token');
      });
    }
    // The adapter changes the distribution: the two rows' prompt logprobs differ on the same model.
    const base = await engine.generate({
      promptTokens: rows[1]!.prompt,
      maxTokens: 1,
      sampling: { temperature: 0 },
      logprobs: 0,
      promptLogprobs: true,
    }).result;
    assert.ok(Math.abs(base.promptLogprobs![3]!.logprob - results[1]!.promptLogprobs![3]!.logprob) > 1e-3);
  });
});
