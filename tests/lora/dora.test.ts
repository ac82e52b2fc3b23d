import { createEngine } from '../helpers/backend.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Engine } from '../../src/engine/index.js';
import { mergeAdapter } from '../../src/lora/index.js';
import { writeRandomModel, type Family, type TinyModel } from '../../src/testing/index.js';
import { referenceLogits, relError, type RefLora } from '../helpers/reference.js';
import { readAdapter, tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { assertBatchMatchesReference, prefill } from '../helpers/drive.js';

const TOL = 1e-4;

/**
 * DoRA served in the shared batch: each case puts a DoRA adapter and a plain LoRA adapter in two
 * slots and checks rows [DoRA, LoRA, base, DoRA] against the float64 reference, which applies
 * PEFT's DoraLinearLayer formula on its own; then merges the DoRA adapter and serves the merged folder.
 */
const cases: Array<{ title: string; family: Family; dora: Record<string, unknown>; lora: Record<string, unknown> }> = [
  {
    title: 'Llama, DoRA on all linear layers with rsLoRA and a rank_pattern',
    family: 'llama',
    dora: { r: 8, lora_alpha: 16, use_dora: true, use_rslora: true, target_modules: 'all-linear', rank_pattern: { down_proj: 4 } },
    lora: { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'] },
  },
  {
    title: 'Qwen2 (q/k/v biases), DoRA on q/k/v/o',
    family: 'qwen2',
    dora: { r: 4, lora_alpha: 8, use_dora: true, target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] },
    lora: { r: 8, lora_alpha: 16, target_modules: 'all-linear' },
  },
  {
    title: 'GPT-2 Conv1D (fan_in_fan_out), DoRA with trained biases (bias outside the scale)',
    family: 'gpt2',
    dora: { r: 4, lora_alpha: 8, use_dora: true, target_modules: ['c_attn', 'c_proj', 'c_fc'], fan_in_fan_out: true, bias: 'lora_only' },
    lora: { r: 8, lora_alpha: 16, target_modules: ['c_attn'], fan_in_fan_out: true },
  },
];

for (const c of cases) {
  describe(`DoRA: ${c.title}`, () => {
    let tiny: TinyModel;
    let engine: Engine;
    let dora: { dir: string; ref: Map<string, RefLora> };
    let lora: { dir: string; ref: Map<string, RefLora> };
    before(async () => {
      tiny = writeRandomModel(join(tempDir(), 'base'), { family: c.family, seed: 41 });
      engine = await createEngine({ modelDir: tiny.dir, slots: 2, maxRank: 8 });
      dora = await writeRandomAdapter(join(tempDir(), 'dora'), engine.model, c.dora, 7);
      lora = await writeRandomAdapter(join(tempDir(), 'lora'), engine.model, c.lora, 8);
      engine.slots!.write(1, readAdapter(dora.dir, engine.model));
      engine.slots!.write(2, readAdapter(lora.dir, engine.model));
    });
    after(() => engine.close());

    it('rows [DoRA, LoRA, base, DoRA] in one batch equal the reference in prefill and decode', async () => {
      const slots = [1, 2, 0, 1];
      const prompts = [
        [5, 6, 7, 8, 9],
        [30, 31, 32],
        [100, 101, 102, 103],
        [200, 7],
      ];
      const refs = [dora.ref, lora.ref, new Map<string, RefLora>(), dora.ref];
      const batch = await assertBatchMatchesReference(engine, tiny, { prompts, rows: slots, refs, next: [11, 12, 13, 14] }, TOL);
      // The magnitude matters: the same weights read as plain LoRA give other logits.
      const asLora = new Map([...dora.ref].map(([k, v]) => [k, { ...v, magnitude: undefined }]));
      const plain = referenceLogits(tiny, prompts[0]!, asLora);
      assert.ok(relError(batch.prefill[0]!, plain[prompts[0]!.length - 1]!) > 1e-3, 'DoRA differs from its LoRA part alone');
    });

    it('merge folds g ⊙ (W + s·B·A) row-wise and the merged folder serves the same logits', async () => {
      const out = join(tempDir(), 'merged');
      await mergeAdapter(tiny.dir, dora.dir, out);
      const merged = await createEngine({ modelDir: out, slots: 0 });
      try {
        const prompts = [
          [1, 2, 3, 4, 5, 6],
          [40, 41],
        ];
        const a = await prefill(engine, prompts, [1, 1]);
        const b = await prefill(merged, prompts);
        for (let r = 0; r < prompts.length; r++)
          assert.ok(relError(b.logits[r]!, a.logits[r]!) < TOL, `row ${r}: ${relError(b.logits[r]!, a.logits[r]!)}`);
      } finally {
        await merged.close();
      }
    });
  });
}
