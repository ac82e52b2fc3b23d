import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadHfModel } from '../../src/model/index.js';
import type { RandomModelOptions } from '../../src/testing/index.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { multipart } from '../helpers/multipart.js';
import { skipWithoutWebgpu } from '../helpers/webgpu.js';

const TOL = 1e-4;

const ADAPTERS: Record<string, Record<string, unknown>> = {
  lora: { r: 8, lora_alpha: 16, target_modules: 'all-linear' },
  dora: { r: 4, lora_alpha: 8, use_dora: true, target_modules: 'all-linear' },
  other: { r: 4, lora_alpha: 8, target_modules: 'all-linear' },
};

/** Requests that share batches: the base model, a LoRA, a DoRA and a weighted mix with a negative weight. */
const ROWS: Array<Record<string, unknown>> = [
  { model: 'tiny' },
  { model: 'lora' },
  { model: 'dora' },
  {
    model: 'tiny',
    adapters: [
      { name: 'lora', weight: 0.7 },
      { name: 'other', weight: -0.4 },
    ],
  },
];

async function server(provider: 'cpu' | 'webgpu', model: RandomModelOptions): Promise<TestServer> {
  const s = await startTestServer({ provider, slots: 3, maxMixAdapters: 2, maxTokens: 16 }, { model });
  const base = loadHfModel(s.modelDir);
  let seed = 300;
  for (const [name, fields] of Object.entries(ADAPTERS)) {
    const dir = join(tempDir(), name);
    await writeRandomAdapter(dir, base, fields, seed++);
    const { payload, headers } = multipart(
      { name },
      {
        'adapter_config.json': readFileSync(join(dir, 'adapter_config.json')),
        'adapter_model.safetensors': readFileSync(join(dir, 'adapter_model.safetensors')),
      },
    );
    const r = await s.app.inject({ method: 'POST', url: '/v1/adapters', payload, headers });
    assert.equal(r.statusCode, 201, r.body);
  }
  base.weights.close();
  return s;
}

interface Scored {
  tokens: string[];
  logprobs: number[];
  top: Array<Record<string, number>>;
}

/** Every row at once (they share steps), greedy, 8 tokens, prompt echoed, 3 alternatives per token. */
async function score(s: TestServer): Promise<Scored[]> {
  const replies = await Promise.all(
    ROWS.map((row) =>
      s.app.inject({
        method: 'POST',
        url: '/v1/completions',
        payload: {
          ...row,
          model: row.model === 'tiny' ? s.serving.baseId : row.model,
          prompt: [5, 77, 42, 9, 130, 61],
          max_tokens: 8,
          temperature: 0,
          logprobs: 3,
          echo: true,
          ignore_eos: true,
        },
      }),
    ),
  );
  return replies.map((r) => {
    assert.equal(r.statusCode, 200, r.body);
    const lp = r.json().choices[0].logprobs;
    return { tokens: lp.tokens, logprobs: lp.token_logprobs.slice(1), top: lp.top_logprobs.slice(1) };
  });
}

const cases: Array<[string, RandomModelOptions]> = [
  ['GPT-2', { family: 'gpt2', seed: 81 }],
  ['Llama (grouped-query attention)', { family: 'llama', seed: 82, heads: 4, kvHeads: 2 }],
  ['Qwen2 (q/k/v biases)', { family: 'qwen2', seed: 83 }],
  [
    'Mistral (sliding window 3)',
    { family: 'llama', seed: 84, config: { model_type: 'mistral', architectures: ['MistralForCausalLM'], sliding_window: 3 } },
  ],
];

describe('a server on --provider webgpu answers as one on cpu', () => {
  for (const [name, model] of cases) {
    it(`${name}: base, LoRA, DoRA and a mix in shared batches give the same tokens and logprobs (1e-4)`, skipWithoutWebgpu(), async () => {
      const cpu = await server('cpu', model);
      const gpu = await server('webgpu', model);
      try {
        assert.equal(gpu.serving.engine.kvResidency, 'device');
        const [want, got] = [await score(cpu), await score(gpu)];
        want.forEach((w, row) => {
          const g = got[row]!;
          assert.deepEqual(g.tokens, w.tokens, `row ${row}: tokens`);
          w.logprobs.forEach((lp, i) =>
            assert.ok(Math.abs(lp - g.logprobs[i]!) <= TOL * Math.max(1, Math.abs(lp)), `row ${row} token ${i}: ${lp} vs ${g.logprobs[i]}`),
          );
          w.top.forEach((alternatives, i) => {
            for (const [token, lp] of Object.entries(alternatives))
              assert.ok(
                Math.abs(lp - (g.top[i]![token] ?? Number.NaN)) <= TOL * Math.max(1, Math.abs(lp)),
                `row ${row} token ${i}: alternative ${token}`,
              );
          });
        });
      } finally {
        await cpu.close();
        await gpu.close();
      }
    });
  }
});
