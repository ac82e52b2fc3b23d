import { createEngine } from '../helpers/backend.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Engine } from '../../src/engine/index.js';
import { mergeAdapter } from '../../src/lora/index.js';
import { writeRandomModel, type TinyModel } from '../../src/testing/index.js';
import { relError, type RefLora } from '../helpers/reference.js';
import { readAdapter, tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { assertBatchMatchesReference, prefill } from '../helpers/drive.js';

const TOL = 1e-4;

/**
 * Weighted adapter mixes (LoRAX's `adapters`): a row applies y = W x + Σ wᵢ sᵢ Bᵢ Aᵢ x, the
 * output-space sum PEFT's add_weighted_adapter(combination_type="cat") builds, in the same step as
 * single-adapter and base rows.
 */
describe('weighted adapter mixes in the shared batch', () => {
  let tiny: TinyModel;
  let engine: Engine;
  const ads: Array<{ dir: string; ref: Map<string, RefLora> }> = [];
  before(async () => {
    tiny = writeRandomModel(join(tempDir(), 'base'), { family: 'qwen2', seed: 51 });
    engine = await createEngine({ modelDir: tiny.dir, slots: 4, maxRank: 8 });
    const fields = [
      { r: 8, lora_alpha: 16, target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] },
      { r: 4, lora_alpha: 4, target_modules: 'all-linear', use_rslora: true },
      { r: 2, lora_alpha: 8, target_modules: ['gate_proj', 'up_proj', 'down_proj'], bias: 'all' },
      { r: 4, lora_alpha: 8, use_dora: true, target_modules: ['q_proj', 'v_proj'] },
    ];
    for (const [i, f] of fields.entries()) {
      ads.push(await writeRandomAdapter(join(tempDir(), `a${i}`), engine.model, f, 60 + i));
      engine.slots!.write(i + 1, readAdapter(ads[i]!.dir, engine.model));
    }
  });
  after(() => engine.close());

  it('a mixed row, two single-adapter rows and a base row in one batch each equal the reference', async () => {
    const mix = [
      { slot: 1, weight: 0.7 },
      { slot: 2, weight: 0.3 },
    ];
    const mix3 = [
      { slot: 3, weight: -0.5 },
      { slot: 1, weight: 1.25 },
    ];
    const rows = [mix, 1, 2, 0, mix3];
    const refs = [
      [
        { weight: 0.7, lora: ads[0]!.ref },
        { weight: 0.3, lora: ads[1]!.ref },
      ],
      ads[0]!.ref,
      ads[1]!.ref,
      new Map<string, RefLora>(),
      [
        { weight: -0.5, lora: ads[2]!.ref },
        { weight: 1.25, lora: ads[0]!.ref },
      ],
    ];
    const prompts = [
      [3, 4, 5, 6],
      [3, 4, 5, 6],
      [80, 81, 82],
      [9, 9, 9, 9, 9],
      [120, 121],
    ];
    const batch = await assertBatchMatchesReference(engine, tiny, { prompts, rows, refs, next: [20, 21, 22, 23, 24] }, TOL);
    // The mix is neither of its parts: it differs from adapter 1 alone on the same prompt.
    assert.ok(relError(batch.prefill[0]!, batch.prefill[1]!) > 1e-3);
  });

  it('weights 1 and 0 reduce a mix to its single adapter', async () => {
    const prompt = [7, 8, 9, 10];
    const single = await prefill(engine, [prompt], [2]);
    const mixed = await prefill(
      engine,
      [prompt],
      [
        [
          { slot: 2, weight: 1 },
          { slot: 1, weight: 0 },
        ],
      ],
    );
    assert.ok(relError(mixed.logits[0]!, single.logits[0]!) < 1e-5);
  });

  it('merging a mix gives the model that serving the mix computes', async () => {
    const out = join(tempDir(), 'merged');
    await mergeAdapter(
      tiny.dir,
      [
        { dir: ads[0]!.dir, weight: 0.7 },
        { dir: ads[2]!.dir, weight: 0.3 },
      ],
      out,
    );
    const merged = await createEngine({ modelDir: out, slots: 0 });
    try {
      const prompts = [
        [1, 2, 3, 4, 5],
        [60, 61],
      ];
      const mix = [
        { slot: 1, weight: 0.7 },
        { slot: 3, weight: 0.3 },
      ];
      const served = await prefill(engine, prompts, [mix, mix]);
      const m = await prefill(merged, prompts);
      for (let r = 0; r < prompts.length; r++)
        assert.ok(relError(m.logits[r]!, served.logits[r]!) < TOL, `row ${r}: ${relError(m.logits[r]!, served.logits[r]!)}`);
    } finally {
      await merged.close();
    }
  });

  it('generate refuses mixes it cannot define: duplicates, non-finite weights, empty slots, DoRA inside a mix', async () => {
    const req = (adapters: Array<{ slot: number; weight: number }>) => () =>
      engine.generate({ promptTokens: [1, 2], adapters, maxTokens: 1 });
    const refused = (run: () => unknown, message: RegExp) =>
      assert.throws(
        run,
        (err: Error & { code?: string; status?: number }) =>
          err.status === 400 && err.code === 'invalid_request' && message.test(err.message),
      );
    refused(
      req([
        { slot: 1, weight: 0.5 },
        { slot: 1, weight: 0.5 },
      ]),
      /slot 1 appears twice/,
    );
    refused(req([{ slot: 1, weight: Number.NaN }]), /not a finite number/);
    refused(req([{ slot: 9, weight: 1 }]), /outside 1\.\.4/);
    refused(
      req([
        { slot: 4, weight: 0.5 },
        { slot: 1, weight: 0.5 },
      ]),
      /DoRA adapter/,
    );
    refused(req([{ slot: 4, weight: 0.5 }]), /DoRA adapter/);
    await assert.rejects(
      mergeAdapter(
        tiny.dir,
        [
          { dir: ads[3]!.dir, weight: 0.5 },
          { dir: ads[0]!.dir, weight: 0.5 },
        ],
        join(tempDir(), 'x'),
      ),
      /DoRA adapter merges alone/,
    );
  });
});
