/**
 * `loraserve bench`: heterogeneous multi-LoRA batching against the ways people serve adapters
 * without it, measured in one process on one machine. Prints JSON; speed is never asserted.
 *
 * (a) serial: one request at a time, the adapter switched before each (PEFT's set_adapter style)
 * (b) hetero: N concurrent requests over 8 adapters in one continuous batch
 * (c) base:   the same N requests on a graph with no LoRA at all
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { Engine, type GenerateRequest } from '../engine/index.js';
import { loadHfModel } from '../model/index.js';
import { bytesToUnicode } from '../tokenizer/index.js';
import { parseAdapter, type ParsedAdapter } from '../lora/index.js';
import { writeRandomAdapter, writeRandomModel } from '../testing/index.js';
import { rng } from '../util/rng.js';
import { Progress } from '../util/progress.js';

export interface BenchOptions {
  quick: boolean;
  threads?: number;
}

const GPT2_VOCAB = 50257;

/** Enough synthetic merges that every one of GPT-2's 50257 ids is a real token. */
function syntheticMerges(count: number): Array<[string, string]> {
  const bytes = bytesToUnicode();
  const merges: Array<[string, string]> = [];
  for (let i = 0; merges.length < count; i++) merges.push([bytes[Math.floor(i / 256)]!, bytes[i % 256]!]);
  return merges;
}

async function timed(engine: Engine, requests: GenerateRequest[], concurrent: boolean): Promise<{ tokens: number; seconds: number }> {
  const start = performance.now();
  let tokens = 0;
  if (concurrent) {
    const results = await Promise.all(requests.map((r) => engine.generate(r).result));
    tokens = results.reduce((a, r) => a + r.completionTokens, 0);
  } else {
    for (const r of requests) tokens += (await engine.generate(r).result).completionTokens;
  }
  return { tokens, seconds: (performance.now() - start) / 1000 };
}

export async function runBench(opts: BenchOptions): Promise<Record<string, unknown>> {
  const promptLen = opts.quick ? 16 : 64;
  const genTokens = opts.quick ? 16 : 64;
  const concurrent = 32;
  const serialRequests = opts.quick ? 4 : 8;
  const adaptersCount = 8;
  // GPT-2's q/k/v/o: the fused qkv projection and the attention output projection.
  const targets = ['c_attn', 'attn.c_proj'];
  const dir = await mkdtemp(join(tmpdir(), 'loraserve-bench-'));
  try {
    process.stderr.write('bench: writing a GPT-2-small-shaped random model (12 layers, 768 wide, vocab 50257)\n');
    const specials = 3;
    writeRandomModel(join(dir, 'gpt2-small-random'), {
      family: 'gpt2', seed: 1, hidden: 768, layers: 12, heads: 12, intermediate: 3072, maxPositions: 1024,
      vocabSize: GPT2_VOCAB, merges: syntheticMerges(GPT2_VOCAB - 256 - specials), std: 0.02,
    });
    const modelDir = join(dir, 'gpt2-small-random');
    const model = loadHfModel(modelDir);
    const adapters: ParsedAdapter[] = [];
    const progress = new Progress('bench: adapters', adaptersCount);
    for (let i = 0; i < adaptersCount; i++) {
      const adir = join(dir, `adapter-${i}`);
      await writeRandomAdapter(adir, model, { r: 16, lora_alpha: 32, target_modules: targets, fan_in_fan_out: true }, 100 + i, 0.02);
      adapters.push(parseAdapter(readFileSync(join(adir, 'adapter_config.json'), 'utf8'), readFileSync(join(adir, 'adapter_model.safetensors')), model, 16));
      progress.update(i + 1);
    }
    model.weights.close();

    const r = rng(7);
    const prompts = Array.from({ length: concurrent }, () => Array.from({ length: promptLen }, () => Math.floor(r.next() * 50000)));
    const request = (i: number, slot: number): GenerateRequest => ({ promptTokens: prompts[i]!, slot, maxTokens: genTokens, ignoreEos: true, sampling: { temperature: 0 } });

    const lora = await Engine.create({ modelDir, slots: adaptersCount, maxRank: 16, loraModules: targets, maxBatch: concurrent, threads: opts.threads ?? 0 });
    // Warm-up: first runs pay ORT's allocation and kernel selection.
    await timed(lora, [request(0, 0)], false);
    process.stderr.write('bench: (a) serial, adapter switched per request\n');
    let serialTokens = 0;
    let serialSeconds = 0;
    for (let i = 0; i < serialRequests; i++) {
      const start = performance.now();
      lora.slots!.write(1, adapters[i % adaptersCount]!);
      serialSeconds += (performance.now() - start) / 1000;
      const t = await timed(lora, [request(i, 1)], false);
      serialTokens += t.tokens;
      serialSeconds += t.seconds;
    }
    adapters.forEach((a, i) => lora.slots!.write(i + 1, a));
    process.stderr.write(`bench: (b) ${concurrent} concurrent requests over ${adaptersCount} adapters, one batch\n`);
    const hetero = await timed(lora, prompts.map((_, i) => request(i, (i % adaptersCount) + 1)), true);
    await lora.close();

    const base = await Engine.create({ modelDir, slots: 0, maxBatch: concurrent, threads: opts.threads ?? 0 });
    await timed(base, [request(0, 0)], false);
    process.stderr.write(`bench: (c) the same ${concurrent} requests, no LoRA in the graph\n`);
    const plain = await timed(base, prompts.map((_, i) => request(i, 0)), true);
    await base.close();

    const tps = (t: { tokens: number; seconds: number }) => t.tokens / t.seconds;
    const serialTps = serialTokens / serialSeconds;
    return {
      machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
      config: { model: 'gpt2-small-shaped random (124M params)', adapters: adaptersCount, rank: 16, targets, promptTokens: promptLen, generatedTokens: genTokens, concurrent, serialRequests, quick: opts.quick },
      serial: { tokens: serialTokens, seconds: +serialSeconds.toFixed(3), tokens_per_s: +serialTps.toFixed(2) },
      hetero: { tokens: hetero.tokens, seconds: +hetero.seconds.toFixed(3), tokens_per_s: +tps(hetero).toFixed(2) },
      base: { tokens: plain.tokens, seconds: +plain.seconds.toFixed(3), tokens_per_s: +tps(plain).toFixed(2) },
      hetero_vs_serial: +(tps(hetero) / serialTps).toFixed(3),
      lora_vs_base: +(tps(hetero) / tps(plain)).toFixed(3),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
