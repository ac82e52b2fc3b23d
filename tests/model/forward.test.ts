import { createEngine } from '../helpers/backend.js';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Engine } from '../../src/engine/index.js';
import { writeRandomModel, type RandomModelOptions } from '../../src/testing/index.js';
import { referenceLogits, relError } from '../helpers/reference.js';
import { tempDir } from '../helpers/adapters.js';
import { decode, prefill } from '../helpers/drive.js';

const TOL = 1e-4;
const engines: Engine[] = [];
after(async () => {
  for (const e of engines) await e.close();
});

async function setup(o: RandomModelOptions, slots = 2) {
  const tiny = writeRandomModel(join(tempDir(), 'model'), o);
  const engine = await createEngine({ modelDir: tiny.dir, slots, maxRank: 8 });
  engines.push(engine);
  return { tiny, engine };
}

const cases: Array<[string, RandomModelOptions]> = [
  ['GPT-2 (learned positions, Conv1D, gelu_new, tied head)', { family: 'gpt2', seed: 11 }],
  ['Llama with grouped-query attention and RoPE, untied head', { family: 'llama', seed: 12, heads: 4, kvHeads: 2 }],
  ['Llama with multi-query attention (one KV head), tied head', { family: 'llama', seed: 13, heads: 4, kvHeads: 1, tie: true }],
  ['Qwen2 (q/k/v biases)', { family: 'qwen2', seed: 14 }],
  [
    'Llama-3 rope_scaling',
    {
      family: 'llama',
      seed: 15,
      ropeScaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8 },
    },
  ],
  ['F16 weights', { family: 'llama', seed: 16, dtype: 'F16' }],
  ['BF16 weights, sharded with an index', { family: 'qwen2', seed: 17, dtype: 'BF16', sharded: true }],
];

describe('ONNX engine matches the float64 reference forward pass', () => {
  for (const [name, options] of cases) {
    it(`${name}: prefill and KV-cached decode`, async () => {
      const { tiny, engine } = await setup(options);
      const tokens = [3, 141, 59, 26, 53, 58, 97, 93, 23, 84];
      const ref = referenceLogits(tiny, tokens);
      const { logits, state } = await prefill(engine, [tokens.slice(0, 6)]);
      assert.ok(relError(logits[0]!, ref[5]!) < TOL, `prefill rel error ${relError(logits[0]!, ref[5]!)}`);
      let s = state;
      for (let t = 6; t < tokens.length; t++) {
        const step = await decode(engine, s, [tokens[t]!]);
        const err = relError(step.logits[0]!, ref[t]!);
        assert.ok(err < TOL, `decode at position ${t}: rel error ${err}`);
        s = step.state;
      }
    });
  }

  it('a left-padded batch of different prompt lengths gives each row its own logits', async () => {
    const { tiny, engine } = await setup({ family: 'llama', seed: 21 });
    const prompts = [
      [5, 6, 7, 8, 9, 10, 11],
      [200, 3],
      [42, 43, 44, 45],
    ];
    const { logits, state } = await prefill(engine, prompts);
    prompts.forEach((p, r) => {
      const ref = referenceLogits(tiny, p);
      assert.ok(relError(logits[r]!, ref[p.length - 1]!) < TOL);
    });
    const next = [1, 2, 3];
    const step = await decode(engine, state, next);
    prompts.forEach((p, r) => {
      const ref = referenceLogits(tiny, [...p, next[r]!]);
      assert.ok(relError(step.logits[r]!, ref[p.length]!) < TOL, `row ${r} after decode`);
    });
  });

  it('a graph built without LoRA inputs gives the same logits', async () => {
    const { tiny, engine } = await setup({ family: 'gpt2', seed: 22 }, 0);
    assert.equal(engine.slots, null);
    const tokens = [9, 8, 7, 6];
    const { logits } = await prefill(engine, [tokens]);
    assert.ok(relError(logits[0]!, referenceLogits(tiny, tokens)[3]!) < TOL);
  });
});
