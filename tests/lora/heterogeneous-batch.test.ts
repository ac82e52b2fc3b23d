import { createEngine } from '../helpers/backend.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Engine } from '../../src/engine/index.js';
import { writeRandomModel, type TinyModel, type Family } from '../../src/testing/index.js';
import { referenceLogits, relError, type RefLora } from '../helpers/reference.js';
import { readAdapter, tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { prefill, decode } from '../helpers/drive.js';
import { encodeSafetensors, type TensorToWrite } from '../../src/model/index.js';
import { mkdirSync, writeFileSync, copyFileSync } from 'node:fs';

const TOL = 1e-4;

/**
 * Merged weights W' = W + s·B·A computed here, independently of the engine (transposed for
 * Conv1D, whose W is [in, out]); trained biases replace the base ones.
 */
function mergedModel(tiny: TinyModel, lora: Map<string, RefLora>): TinyModel {
  const dir = join(tempDir(), 'merged');
  mkdirSync(dir, { recursive: true });
  const weights = new Map(tiny.weights);
  for (const [name, ad] of lora) {
    const w = tiny.weights.get(`${name}.weight`)!;
    const data = Float32Array.from(w.data);
    const conv = tiny.config.model_type === 'gpt2';
    const [d0, d1] = w.shape as [number, number];
    const [outF, inF] = conv ? [d1, d0] : [d0, d1];
    for (let o = 0; o < outF; o++) {
      for (let i = 0; i < inF; i++) {
        let s = 0;
        for (let k = 0; k < ad.r; k++) s += ad.B[o * ad.r + k]! * ad.A[k * inF + i]!;
        data[conv ? i * outF + o : o * inF + i]! += ad.scale * s;
      }
    }
    weights.set(`${name}.weight`, { shape: w.shape, data });
    if (ad.bias) weights.set(`${name}.bias`, { shape: [outF], data: ad.bias });
  }
  const tensors: Record<string, TensorToWrite> = {};
  for (const [n, w] of weights) tensors[n] = { dtype: 'F32', shape: w.shape, data: w.data };
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors));
  for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'])
    copyFileSync(join(tiny.dir, f), join(dir, f));
  return { ...tiny, dir, weights };
}

interface Case {
  family: Family;
  adapters: Array<Record<string, unknown>>;
}

const cases: Record<string, Case> = {
  'Llama q/k/v/o, all-linear, rank 4, rank 16 with rsLoRA, rank_pattern, layers_to_transform': {
    family: 'llama',
    adapters: [
      { r: 8, lora_alpha: 16, target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] },
      { r: 8, lora_alpha: 8, target_modules: 'all-linear' },
      { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'], layers_to_transform: [1] },
      {
        r: 16,
        lora_alpha: 32,
        use_rslora: true,
        target_modules: ['gate_proj', 'up_proj', 'down_proj', 'o_proj'],
        rank_pattern: { down_proj: 4 },
        alpha_pattern: { o_proj: 3 },
      },
    ],
  },
  'GPT-2 c_attn + c_proj (fan_in_fan_out), bias lora_only, regex targets': {
    family: 'gpt2',
    adapters: [
      { r: 8, lora_alpha: 16, target_modules: ['c_attn', 'c_proj'], fan_in_fan_out: true },
      { r: 8, lora_alpha: 16, target_modules: ['c_attn'], fan_in_fan_out: true, bias: 'lora_only' },
      { r: 4, lora_alpha: 4, target_modules: String.raw`.*\.h\.0\.mlp\.c_fc`, fan_in_fan_out: true },
      {
        r: 16,
        lora_alpha: 16,
        use_rslora: true,
        target_modules: 'all-linear',
        fan_in_fan_out: true,
        layers_to_transform: 1,
        layers_pattern: 'h',
      },
    ],
  },
};

for (const [title, c] of Object.entries(cases)) {
  describe(`heterogeneous LoRA batch: ${title}`, () => {
    let tiny: TinyModel;
    let engine: Engine;
    let refs: Array<Map<string, RefLora>>;
    before(async () => {
      tiny = writeRandomModel(join(tempDir(), 'base'), { family: c.family, seed: 31 });
      engine = await createEngine({ modelDir: tiny.dir, slots: 4, maxRank: 16 });
      refs = [];
      for (const [i, fields] of c.adapters.entries()) {
        const dir = join(tempDir(), `adapter-${i}`);
        const ad = await writeRandomAdapter(dir, engine.model, fields, 100 + i);
        engine.slots!.write(i + 1, readAdapter(dir, engine.model));
        refs.push(ad.ref);
      }
    });
    after(() => engine.close());

    it('rows [base, A, B, A, C, D] in one batch each equal the reference, the row alone, and the merged model', async () => {
      const slots = [0, 1, 2, 1, 3, 4];
      const prompts = [
        [1, 2, 3, 4, 5],
        [9, 8, 7],
        [100, 101, 102, 103, 104, 105],
        [9, 8, 7],
        [60, 61, 62, 63],
        [250, 4, 4, 4, 4, 5, 6],
      ];
      const batch = await prefill(engine, prompts, slots);
      const next = [7, 7, 7, 8, 9, 10];
      const stepped = await decode(engine, batch.state, next);
      for (let r = 0; r < prompts.length; r++) {
        const lora = slots[r] ? refs[slots[r]! - 1]! : new Map<string, RefLora>();
        const ref = referenceLogits(tiny, [...prompts[r]!, next[r]!], lora);
        assert.ok(relError(batch.logits[r]!, ref[prompts[r]!.length - 1]!) < TOL, `row ${r} prefill vs reference`);
        assert.ok(relError(stepped.logits[r]!, ref[prompts[r]!.length]!) < TOL, `row ${r} decode vs reference`);
        const alone = await prefill(engine, [prompts[r]!], [slots[r]!]);
        assert.ok(relError(batch.logits[r]!, alone.logits[0]!) < 1e-5, `row ${r} batched vs alone`);
      }
      // The adapters change the output: an adapted row differs from the base on the same prompt.
      assert.ok(relError(batch.logits[1]!, (await prefill(engine, [prompts[1]!], [0])).logits[0]!) > 1e-3);

      for (const [i, lora] of refs.entries()) {
        const merged = await createEngine({ modelDir: mergedModel(tiny, lora).dir, slots: 0 });
        try {
          const r = slots.indexOf(i + 1);
          const m = await prefill(merged, [prompts[r]!]);
          assert.ok(relError(batch.logits[r]!, m.logits[0]!) < TOL, `adapter ${i + 1}: unmerged vs merged`);
        } finally {
          await merged.close();
        }
      }
    });

    it('clearing a slot returns its rows to the base model', async () => {
      const prompt = [5, 6, 7, 8];
      const base = await prefill(engine, [prompt], [0]);
      engine.slots!.clear(2);
      const cleared = await prefill(engine, [prompt], [2]);
      assert.ok(relError(cleared.logits[0]!, base.logits[0]!) < 1e-6);
    });
  });
}
