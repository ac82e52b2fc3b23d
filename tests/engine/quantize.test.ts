/**
 * Fidelity of the quantized base model against float32, on random test models and on the trained
 * demo model with its three adapters (which stay float32). The bounds are the README's.
 */
import { BACKEND_NAME, createEngine } from '../helpers/backend.js';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Engine } from '../../src/engine/index.js';
import type { QuantizeMode } from '../../src/model/index.js';
import { writeRandomModel, type Family } from '../../src/testing/random-model.js';
import { tempDir } from '../helpers/adapters.js';
import { decode, prefill } from '../helpers/drive.js';
import { relError } from '../helpers/reference.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const DOMAINS = ['customer_service', 'medical', 'legal'] as const;

/**
 * Measured worst cases in the comments (these prompts; random models: the 3 here, and 9 seeds in
 * brackets); the bounds leave room for other CPUs' kernels.
 */
const BOUNDS: Record<QuantizeMode, { random: { logits: number; top1: number }; demo: { logits: number } }> = {
  // random: logits ≤ 0.035 [0.035], top-1 ≥ 0.979 [0.958]; demo: ≤ 0.008 (0.005 on the base)
  int8: { random: { logits: 0.05, top1: 0.9 }, demo: { logits: 0.06 } },
  // random: logits ≤ 0.29 [0.36], top-1 ≥ 0.75 [0.667]; demo: ≤ 0.12 (0.046 on the base)
  int4: { random: { logits: 0.4, top1: 0.6 }, demo: { logits: 0.3 } },
};

const engines: Engine[] = [];
after(async () => {
  for (const e of engines) await e.close();
});

async function engine(modelDir: string, quantize: QuantizeMode | null, quantCacheDir: string, slots = 0): Promise<Engine> {
  const e = await createEngine({ modelDir, quantize, quantCacheDir, slots, maxRank: 32, threads: 1 });
  engines.push(e);
  return e;
}

const argmax = (a: Float32Array) => a.reduce((best, v, i) => (v > a[best]! ? i : best), 0);

/** Float32's greedy continuation and the logits of each step. */
async function greedy(e: Engine, prompt: number[], slot: number, steps: number): Promise<{ tokens: number[]; logits: Float32Array[] }> {
  let { logits, state } = await prefill(e, [prompt], [slot]);
  const out = { tokens: [argmax(logits[0]!)], logits: [logits[0]!] };
  while (out.tokens.length < steps) {
    ({ logits, state } = await decode(e, state, [out.tokens.at(-1)!]));
    out.tokens.push(argmax(logits[0]!));
    out.logits.push(logits[0]!);
  }
  return out;
}

/** Logits of each step when fed the reference's tokens (teacher forcing). */
async function forced(e: Engine, prompt: number[], slot: number, tokens: number[]): Promise<Float32Array[]> {
  let { logits, state } = await prefill(e, [prompt], [slot]);
  const out = [logits[0]!];
  for (const t of tokens.slice(0, -1)) {
    ({ logits, state } = await decode(e, state, [t]));
    out.push(logits[0]!);
  }
  return out;
}

/** Worst relative logits error and the share of steps whose top token matches, over prompts. */
async function compare(
  ref: Engine,
  q: Engine,
  prompts: Array<[number[], number]>,
  steps: number,
): Promise<{ logits: number; top1: number }> {
  let worst = 0;
  let agree = 0;
  let total = 0;
  for (const [prompt, slot] of prompts) {
    const r = await greedy(ref, prompt, slot, steps);
    const got = await forced(q, prompt, slot, r.tokens);
    got.forEach((l, i) => {
      worst = Math.max(worst, relError(l, r.logits[i]!));
      if (argmax(l) === r.tokens[i]) agree++;
      total++;
    });
  }
  return { logits: worst, top1: agree / total };
}

describe('quantized base weights on random models', () => {
  const families: Family[] = ['gpt2', 'llama', 'qwen2'];
  const prompts: Array<[number[], number]> = [
    [[3, 141, 59, 26, 53, 58, 97, 93], 0],
    [[10, 20, 30], 0],
    [[200, 100, 50, 25, 12, 6], 0],
  ];
  for (const family of families) {
    it(`${family}: int8 and int4 logits stay within their bounds of float32 over 16 steps`, async () => {
      const cache = tempDir();
      // std 0.1: activations of a trained model's scale (the default fixtures amplify any error)
      const { dir } = writeRandomModel(join(tempDir(), 'model'), { family, seed: 101, std: 0.1 });
      const ref = await engine(dir, null, cache);
      for (const mode of ['int8', 'int4'] as const) {
        const q = await engine(dir, mode, cache);
        const got = await compare(ref, q, prompts, 16);
        assert.ok(got.logits <= BOUNDS[mode].random.logits, `${mode}: logits relative error ${got.logits}`);
        assert.ok(got.top1 >= BOUNDS[mode].random.top1, `${mode}: top-1 agreement ${got.top1}`);
      }
    });
  }

  it('a restart reads the quantized weights back from the cache and computes the same logits', async () => {
    const cache = tempDir();
    const { dir } = writeRandomModel(join(tempDir(), 'model'), { family: 'llama', seed: 102, std: 0.1 });
    const first = await engine(dir, 'int4', cache);
    const second = await engine(dir, 'int4', cache);
    assert.equal(first.quantization!.entry.reused, false);
    assert.equal(second.quantization!.entry.reused, true);
    assert.equal(second.quantization!.entry.file, first.quantization!.entry.file);
    const a = await prefill(first, [[5, 6, 7, 8]]);
    const b = await prefill(second, [[5, 6, 7, 8]]);
    assert.deepEqual(b.logits[0], a.logits[0]);
  });
});

describe('quantized base weights on the demo model, adapters in float32', () => {
  const modelDir = join(root, 'models', 'loraserve-demo');
  const cache = tempDir();

  /** Trained and validation questions of each domain, asked of its adapter; the first ones of the base too. */
  function questions(): Array<{ content: string; slot: number; trained: boolean }> {
    const out: Array<{ content: string; slot: number; trained: boolean }> = [];
    DOMAINS.forEach((d, i) => {
      const read = (f: string) =>
        readFileSync(join(root, 'adapters', d, f), 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { instruction: string; key: string });
      const held = new Set<number>(JSON.parse(readFileSync(join(root, 'adapters', d, 'train-log.json'), 'utf8')).heldOutLines);
      const keys = new Set<string>();
      read('data.jsonl').forEach((row, line) => {
        if (keys.size < 4 && !held.has(line + 1) && !keys.has(row.key)) {
          keys.add(row.key);
          out.push({ content: row.instruction, slot: i + 1, trained: true });
        }
      });
      for (const row of read('valid.jsonl').slice(0, 2)) out.push({ content: row.instruction, slot: i + 1, trained: false });
      out.push({ content: out.at(-1)!.content, slot: 0, trained: false });
    });
    return out;
  }

  async function demoEngine(quantize: QuantizeMode | null): Promise<Engine> {
    const e = await engine(modelDir, quantize, cache, DOMAINS.length);
    DOMAINS.forEach((d, i) => {
      const dir = join(root, 'adapters', d);
      e.slots!.write(
        i + 1,
        e.parseAdapter(readFileSync(join(dir, 'adapter_config.json'), 'utf8'), readFileSync(join(dir, 'adapter_model.safetensors'))),
      );
    });
    return e;
  }

  /** Greedy answers (up to 48 tokens or end of turn) to every question, in one batch. */
  async function answers(e: Engine): Promise<string[]> {
    const qs = questions();
    const results = await Promise.all(
      qs.map(
        (q) =>
          e.generate({
            promptTokens: e.tokenizer.applyChatTemplate([{ role: 'user', content: q.content }]),
            slot: q.slot,
            maxTokens: 48,
            sampling: { temperature: 0 },
          }).result,
      ),
    );
    return results.map((r) => r.text);
  }

  // WebGPU's 8-bit kernel rounds differently from the CPU's, and greedy babble to a question no
  // adapter was trained on flips on the smallest difference: there int8 must give the trained answers.
  const int8GivesEveryAnswer = BACKEND_NAME !== 'webgpu';
  it(`int8 gives ${int8GivesEveryAnswer ? 'every answer' : 'every trained answer'} float32 gives, token for token; int4 every trained answer`, async () => {
    const qs = questions();
    const ref = await answers(await demoEngine(null));
    assert.equal(new Set(ref).size > 4, true, 'the adapters answer differently from each other and the base');
    const int8 = await answers(await demoEngine('int8'));
    const int4 = await answers(await demoEngine('int4'));
    qs.forEach((q, i) => {
      if (q.trained || int8GivesEveryAnswer) assert.equal(int8[i], ref[i], `int8 answer to "${q.content}" (slot ${q.slot})`);
      if (q.trained) assert.equal(int4[i], ref[i], `int4 answer to "${q.content}" (slot ${q.slot})`);
    });
  });

  it('logits stay within the stated bounds, with and without an adapter', async () => {
    const ref = await demoEngine(null);
    const qs = questions();
    const prompts: Array<[number[], number]> = [0, 6, 12, 17].map((i) => [
      ref.tokenizer.applyChatTemplate([{ role: 'user', content: qs[i]!.content }]),
      qs[i]!.slot,
    ]);
    for (const mode of ['int8', 'int4'] as const) {
      const got = await compare(ref, await demoEngine(mode), prompts, 16);
      assert.ok(got.logits <= BOUNDS[mode].demo.logits, `${mode}: logits relative error ${got.logits}`);
    }
  });
});
