import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { matmulParams, usefulFlops } from '../../src/bench/flops.js';
import { loadHfModel } from '../../src/model/index.js';
import { writeRandomModel } from '../../src/testing/index.js';
import { readAdapter, tempDir, writeRandomAdapter } from '../helpers/adapters.js';

describe('useful FLOP accounting of a generation run', () => {
  it('counts every linear layer, the LM head and the adapter A/B of a GPT-2 model', async () => {
    const [hidden, layers, r] = [32, 2, 4];
    const model = loadHfModel(
      writeRandomModel(join(tempDir(), 'model'), { family: 'gpt2', hidden, layers, heads: 4, intermediate: 4 * hidden }).dir,
    );
    const dir = join(tempDir(), 'adapter');
    await writeRandomAdapter(dir, model, { r, lora_alpha: 2 * r, target_modules: ['c_attn', 'attn.c_proj'], fan_in_fan_out: true }, 3);
    const p = matmulParams(model, readAdapter(dir, model));
    model.weights.close();
    // Per layer: c_attn h→3h, attn.c_proj h→h, mlp.c_fc h→4h, mlp.c_proj 4h→h.
    assert.equal(p.body, layers * 12 * hidden * hidden);
    assert.equal(p.head, hidden * model.dims.vocabSize);
    // Per layer: r·(h + 3h) for c_attn, r·(h + h) for attn.c_proj.
    assert.equal(p.lora, layers * r * 6 * hidden);
  });

  it('counts no LoRA work without an adapter', () => {
    const model = loadHfModel(
      writeRandomModel(join(tempDir(), 'model'), { family: 'qwen2', hidden: 32, layers: 1, heads: 4, kvHeads: 2, intermediate: 64 }).dir,
    );
    const p = matmulParams(model, null);
    model.weights.close();
    // q h→h, k and v h→kvHeads·headDim (2·8), o h→h, gate and up h→i, down i→h.
    assert.deepEqual(p, { body: 32 * 32 * 2 + 2 * 32 * 16 + 3 * 32 * 64, head: 32 * model.dims.vocabSize, lora: 0 });
  });

  it('feeds the prompt and all but the last generated token through the body, and reads logits once per generated token', () => {
    const p = { body: 1000, head: 300, lora: 10 };
    assert.equal(usefulFlops(p, { requests: 4, promptTokens: 5, generatedTokens: 3 }), 2 * 4 * (1010 * 7 + 300 * 3));
    assert.equal(usefulFlops(p, { requests: 1, promptTokens: 5, generatedTokens: 1 }), 2 * (1010 * 5 + 300));
    assert.equal(usefulFlops(p, { requests: 4, promptTokens: 5, generatedTokens: 0 }), 0);
  });
});
