import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { createEngine } from '../helpers/backend.js';
import { mergeAdapter } from '../../src/lora/index.js';
import { writeRandomModel } from '../../src/testing/index.js';
import { loadHfModel } from '../../src/model/index.js';
import { readAdapter, tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { prefill } from '../helpers/drive.js';
import { relError } from '../helpers/reference.js';

describe('loraserve merge', () => {
  const cases: Array<[string, 'gpt2' | 'llama', Record<string, unknown>]> = [
    ['Llama, all-linear, rsLoRA', 'llama', { r: 8, lora_alpha: 16, target_modules: 'all-linear', use_rslora: true }],
    [
      'GPT-2 Conv1D (fan_in_fan_out) with trained biases',
      'gpt2',
      { r: 4, lora_alpha: 8, target_modules: ['c_attn', 'c_proj'], fan_in_fan_out: true, bias: 'lora_only' },
    ],
  ];
  for (const [title, family, fields] of cases) {
    it(`${title}: the merged folder serves the same logits as base + adapter unmerged`, async () => {
      const root = tempDir();
      const base = join(root, 'base');
      writeRandomModel(base, { family, seed: 8 });
      const model = loadHfModel(base);
      const adapterDir = join(root, 'adapter');
      await writeRandomAdapter(adapterDir, model, fields, 4);
      model.weights.close();
      const out = join(root, 'merged');
      await mergeAdapter(base, adapterDir, out);
      const unmerged = await createEngine({ modelDir: base, slots: 1, maxRank: 8 });
      const merged = await createEngine({ modelDir: out, slots: 0 });
      try {
        unmerged.slots!.write(1, readAdapter(adapterDir, unmerged.model, 8));
        const prompts = [
          [1, 2, 3, 4, 5, 6],
          [40, 41],
        ];
        const a = await prefill(unmerged, prompts, [1, 1]);
        const b = await prefill(merged, prompts);
        const baseOnly = await prefill(unmerged, prompts, [0, 0]);
        for (let r = 0; r < prompts.length; r++) {
          assert.ok(relError(b.logits[r]!, a.logits[r]!) < 1e-4, `row ${r}: ${relError(b.logits[r]!, a.logits[r]!)}`);
          assert.ok(relError(b.logits[r]!, baseOnly.logits[r]!) > 1e-3, 'merging changed the model');
        }
        assert.equal(merged.tokenizer.encode('안녕').length, unmerged.tokenizer.encode('안녕').length, 'tokenizer copied');
      } finally {
        await unmerged.close();
        await merged.close();
      }
    });
  }
});
