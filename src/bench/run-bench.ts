/**
 * `loraserve bench`: heterogeneous multi-LoRA batching against the ways people serve adapters
 * without it, plus the engine's own limits, measured in one process on one machine. Speed is
 * reported as ratios within the run and never asserted.
 *
 * GPT-2-small shape, 8 rank-16 adapters on q/k/v/o:
 *   serial   one request at a time, the adapter switched before each (PEFT's set_adapter style)
 *   hetero   32 concurrent requests over the 8 adapters in one continuous batch; against the peak GEMM rate measured
 *            first (one large fp32 MatMul, peak-gemm.ts), its useful FLOP/s (flops.ts: base linears, LM head and
 *            LoRA A/B, 2 FLOP per weight per row, prefill included) give hetero_gemm_efficiency
 *   base     the same 32 requests on a graph with no LoRA at all
 *   s64_r64  hetero on an engine built for 64 slots of rank up to 64 (the slots configured must not tax a batch)
 *   grammar  hetero with every row under a JSON-schema grammar (structured output), against hetero run beside it
 *   tools    hetero with every row forced to call tools (tool_choice required), against hetero run beside it
 *   decode-step time at 64 and 512 cached positions (batch 32), and a long-context run (prompt 512, 128 generated)
 *   fairness tenant A floods (64 streams × 128 tokens over 2 adapters) while tenant B sends 16-token requests
 *            one at a time on a third; two tenants at weights 1:3 share the batch (fairness.ts)
 *   prefix   time to first token of a 512-token cached system prompt + 32 new tokens against it read whole, and
 *            16 conversations of 4 turns over the 8 adapters with the prefix cache against without (prefix.ts)
 * Qwen2.5-0.5B shape (BF16 on disk), loraserve at fp32/int8/int4 against llama.cpp at F32/Q8_0/Q4_0: one stream,
 * 32 requests over 8 adapters, 32 without, and the many-adapter workloads (32 requests over 32 adapters and 64 over
 * 64, one each: ours in one batch, llama.cpp one context per adapter); decode-step times, resident memory in a child
 * process. Summary ratios against llama.cpp (peer-ratios.ts), per workload (single_stream, multi_adapter = 32 over 8,
 * many_adapters = 32 over 32):
 *   peer_<workload>_ratio       our fastest precision ÷ llama.cpp at that same precision (fp32↔F32, int8↔Q8_0, int4↔Q4_0)
 *   peer_best_<workload>_ratio  our fastest precision ÷ llama.cpp's fastest weight type (each side's best setting)
 * details.qwen2-0.5b.best_precision names the precision each side's figure came from.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { Engine, type EngineOptions, type ExecutionProvider, type GenerateRequest } from '../engine/index.js';
import { loadHfModel, type HfModel, type QuantizeMode } from '../model/index.js';
import { StructuredOutput, type OutputConstraint } from '../grammar/index.js';
import { parseAdapter, type ParsedAdapter } from '../lora/index.js';
import { writeGgufLora, writeGgufModel, writeRandomAdapter } from '../testing/index.js';
import { rng } from '../util/rng.js';
import { Progress } from '../util/progress.js';
import { fairnessRun } from './fairness.js';
import { prefixRun } from './prefix.js';
import { runLlamaPeer, type LlamaPeerResult } from './llama-peer.js';
import { decodeStepCosts, runRequests, type DecodeStepCost, type Latency, type Throughput } from './measure.js';
import { profileDecodeSteps } from './step-profile.js';
import { matmulParams, usefulFlops } from './flops.js';
import { peakGemm } from './peak-gemm.js';
import { bestPrecision, bestRatio, equalPrecisionRatio } from './peer-ratios.js';
import type { RssProbeResult } from './rss-probe.js';
import { SHAPES, writeShape, type ShapeName } from './shapes.js';

export interface BenchOptions {
  quick: boolean;
  threads?: number;
  /** Run one shape's section only; both by default (the Qwen2.5-0.5B one is skipped by --quick). */
  shape?: ShapeName;
  /** Base weights of the GPT-2-small section's engines (the Qwen2.5-0.5B section runs every precision). */
  quantize?: QuantizeMode;
  /** Every engine's execution provider (cpu by default). */
  provider?: ExecutionProvider;
}

const ADAPTERS = 8;
const RANK = 16;
const CONCURRENT = 32;

const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

async function writeAdapters(dir: string, model: HfModel, shape: ShapeName, count = ADAPTERS): Promise<ParsedAdapter[]> {
  const { targets, fanInFanOut } = SHAPES[shape];
  const adapters: ParsedAdapter[] = [];
  const progress = new Progress('bench: adapters', count);
  for (let i = 0; i < count; i++) {
    const adir = join(dir, `adapter-${i}`);
    await writeRandomAdapter(
      adir,
      model,
      { r: RANK, lora_alpha: 2 * RANK, target_modules: [...targets], fan_in_fan_out: fanInFanOut },
      100 + i,
      0.02,
    );
    adapters.push(
      parseAdapter(
        readFileSync(join(adir, 'adapter_config.json'), 'utf8'),
        readFileSync(join(adir, 'adapter_model.safetensors')),
        model,
        RANK,
      ),
    );
    progress.update(i + 1);
  }
  return adapters;
}

function prompts(count: number, length: number, vocab: number): number[][] {
  const r = rng(7);
  return Array.from({ length: count }, () => Array.from({ length }, () => Math.floor(r.next() * (vocab - 1))));
}

const requests = (ps: number[][], generate: number, slotOf: (i: number) => number): GenerateRequest[] =>
  ps.map((p, i) => ({ promptTokens: p, slot: slotOf(i), maxTokens: generate, ignoreEos: true, sampling: { temperature: 0 } }));

/** An engine with the adapters in slots 1..n (spread over the slots when there are more). */
async function loraEngine(
  modelDir: string,
  adapters: ParsedAdapter[],
  opts: Partial<EngineOptions>,
  targets: readonly string[],
): Promise<Engine> {
  const slots = opts.slots ?? ADAPTERS;
  const engine = await Engine.create({ modelDir, maxRank: RANK, loraModules: [...targets], maxBatch: CONCURRENT, ...opts, slots });
  const stride = Math.floor(slots / adapters.length);
  adapters.forEach((a, i) => engine.slots!.write(1 + i * stride, a));
  return engine;
}

const slotOfRow = (slots: number) => (i: number) => 1 + (i % ADAPTERS) * Math.floor(slots / ADAPTERS);

async function rssProbe(options: Record<string, unknown>): Promise<RssProbeResult> {
  const probe = fileURLToPath(new URL('./rss-probe.ts', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', probe, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out) as RssProbeResult) : reject(new Error(`rss probe exited with ${code}`)),
    );
  });
}

async function gpt2Section(dir: string, opts: BenchOptions) {
  const shape = 'gpt2-small';
  const promptLen = opts.quick ? 16 : 64;
  const generate = opts.quick ? 16 : 64;
  const serialRequests = opts.quick ? 4 : 8;
  const threads = opts.threads ?? 0;
  const quantize = opts.quantize ?? null;
  const provider = opts.provider ?? 'cpu';
  const { targets } = SHAPES[shape];
  log(`writing a ${SHAPES[shape].label}`);
  const modelDir = writeShape(join(dir, shape), shape);
  const model = loadHfModel(modelDir);
  const adapters = await writeAdapters(dir, model, shape);
  const vocab = model.dims.vocabSize;
  // Every adapter has the same rank and targets, so each request's LoRA work is the same.
  const params = matmulParams(model, adapters[0]!);
  model.weights.close();
  const ps = prompts(CONCURRENT, promptLen, vocab);

  // Before any engine exists: an idle session's thread pool would take cores from the GEMM.
  log('peak fp32 GEMM: one large MatMul, best of a few runs at each shape');
  const peak = await peakGemm({ threads, provider });

  const lora = await loraEngine(modelDir, adapters, { threads, quantize, provider }, targets);
  await runRequests(
    lora,
    requests([ps[0]!], 4, () => 1),
    false,
  ); // warm-up: ORT's allocations and kernel choice
  log('(a) serial, adapter switched per request');
  const serial = await runRequests(
    lora,
    requests(ps.slice(0, serialRequests), generate, () => 1),
    false,
    (i) => lora.slots!.write(1, adapters[i % ADAPTERS]!),
  );
  adapters.forEach((a, i) => lora.slots!.write(i + 1, a));
  log(`(b) ${CONCURRENT} concurrent requests over ${ADAPTERS} adapters, one batch`);
  const hetero = await runRequests(lora, requests(ps, generate, slotOfRow(ADAPTERS)), true);
  const heteroFlops = usefulFlops(params, { requests: CONCURRENT, promptTokens: promptLen, generatedTokens: generate });
  const heteroGflops = heteroFlops / hetero.seconds / 1e9;
  log(`(e) the same ${CONCURRENT} requests under a JSON-schema grammar (structured output)`);
  const grammar = await grammarRun(lora, requests(ps, generate, slotOfRow(ADAPTERS)));
  log(`(f) the same ${CONCURRENT} requests forced to call tools (tool_choice required)`);
  const tools = await toolsRun(lora, requests(ps, generate, slotOfRow(ADAPTERS)));
  log('decode-step time at 64 and 512 cached positions, batch 32');
  const rowSlots = ps.map((_, i) => slotOfRow(ADAPTERS)(i));
  const [cost64, cost512] = (await decodeStepCosts(lora, rowSlots, [64, 512])) as [DecodeStepCost, DecodeStepCost];
  const [step64, step512] = [cost64.ms, cost512.ms];
  let long = null;
  if (!opts.quick) {
    log('long context: prompt 512, 128 generated, batch 1 and 32');
    const longPrompts = prompts(CONCURRENT, 512, vocab);
    const one = await runRequests(
      lora,
      requests([longPrompts[0]!], 128, () => 1),
      false,
    );
    const all = await runRequests(lora, requests(longPrompts, 128, slotOfRow(ADAPTERS)), true);
    long = { prompt_tokens: 512, generated_tokens: 128, batch_1: one, batch_32: all };
  }
  log('(g) fairness: a flooding tenant and a quiet one; two tenants at weights 1:3');
  const fairness = await fairnessRun(
    lora,
    prompts(CONCURRENT, promptLen, vocab),
    [1, 2, 3],
    opts.quick
      ? {
          floodStreams: 2 * CONCURRENT,
          floodTokens: 32,
          quietTokens: 16,
          quietRequests: 4,
          weightedRequests: CONCURRENT,
          weightedTokens: 16,
        }
      : {
          floodStreams: 2 * CONCURRENT,
          floodTokens: 128,
          quietTokens: 16,
          quietRequests: 8,
          weightedRequests: 3 * CONCURRENT,
          weightedTokens: 32,
        },
  );
  log('(g) prefix cache: a cached system prompt, and multi-turn chats over the adapters');
  const prefix = await prefixRun(
    lora,
    Array.from({ length: ADAPTERS }, (_, i) => slotOfRow(ADAPTERS)(i)),
    opts.quick
      ? { system: 64, tail: 8, repeats: 3, conversations: 4, turns: 2, question: 8, answer: 8 }
      : { system: 512, tail: 32, repeats: 5, conversations: 16, turns: 4, question: 32, answer: 32 },
  );
  await lora.close();

  const base = await Engine.create({ modelDir, slots: 0, maxBatch: CONCURRENT, threads, quantize, provider });
  await runRequests(
    base,
    requests([ps[0]!], 4, () => 0),
    false,
  );
  log(`(c) the same ${CONCURRENT} requests, no LoRA in the graph`);
  const plain = await runRequests(
    base,
    requests(ps, generate, () => 0),
    true,
  );
  const [baseStep64, baseStep512] = (
    await decodeStepCosts(
      base,
      ps.map(() => 0),
      [64, 512],
    )
  ).map((c) => c.ms);
  await base.close();

  log('(d) hetero on an engine built for 64 slots of rank up to 64');
  const wide = await loraEngine(modelDir, adapters, { threads, quantize, provider, slots: 64, maxRank: 64 }, targets);
  await runRequests(
    wide,
    requests([ps[0]!], 4, () => 1),
    false,
  );
  const hetero64 = await runRequests(wide, requests(ps, generate, slotOfRow(64)), true);
  await wide.close();

  log('decode step at 64 and 512 cached positions, batch 32 over 8 adapters: where the time goes (ORT profile)');
  const stepProfile = await profileDecodeSteps(
    { modelDir, maxRank: RANK, loraModules: [...targets], slots: ADAPTERS, maxBatch: CONCURRENT, threads, quantize, provider },
    adapters,
    [64, 512].map((cached) => ({ slots: rowSlots, cached })),
    dir,
  );

  return {
    details: {
      model: SHAPES[shape].label,
      base_weights: quantize ?? 'fp32',
      adapters: ADAPTERS,
      rank: RANK,
      targets,
      promptTokens: promptLen,
      generatedTokens: generate,
      concurrent: CONCURRENT,
      serialRequests,
      serial,
      hetero,
      hetero_useful_work: {
        counted:
          '2 FLOP per weight per row fed: base linears and LoRA A/B on prompt + generated - 1 rows, LM head on generated rows; attention products excluded',
        params,
        gflop: +(heteroFlops / 1e9).toFixed(2),
        gflops_per_s: +heteroGflops.toFixed(2),
      },
      peak_gemm: peak,
      base: plain,
      hetero_s64_r64: hetero64,
      structured_output: grammar,
      tool_calls: tools,
      decode_step_ms: { lora: { cached_64: step64, cached_512: step512 }, base: { cached_64: baseStep64, cached_512: baseStep512 } },
      step_profile: stepProfile,
      kv_cache: lora.kvResidency,
      host_device_bytes_per_decode_step: {
        cached_64: { to_device: cost64.to_device_bytes, from_device: cost64.from_device_bytes },
        cached_512: { to_device: cost512.to_device_bytes, from_device: cost512.from_device_bytes },
      },
      long_context: long,
      fairness,
      prefix_cache: prefix,
    },
    summary: {
      hetero_vs_serial: +(hetero.tokens_per_s / serial.tokens_per_s).toFixed(3),
      hetero_gemm_efficiency: +(heteroGflops / peak.gflops_per_s).toFixed(3),
      lora_vs_base: +(hetero.tokens_per_s / plain.tokens_per_s).toFixed(3),
      lora_vs_base_s64_r64: +(hetero64.tokens_per_s / plain.tokens_per_s).toFixed(3),
      decode_step_512_vs_64: +(step512 / step64).toFixed(3),
      grammar_vs_free_b32: +(grammar.constrained.tokens_per_s / grammar.free.tokens_per_s).toFixed(3),
      transfer_bytes_512_vs_64: +(
        (cost512.to_device_bytes + cost512.from_device_bytes) /
        (cost64.to_device_bytes + cost64.from_device_bytes)
      ).toFixed(3),
      tools_vs_free_b32: +(tools.constrained.tokens_per_s / tools.free.tokens_per_s).toFixed(3),
      ...fairness.summary,
      ...prefix.summary,
    },
  };
}

/** Every argument list is at least 200 small integers: no call can end within the run. */
const LONG_LIST = { type: 'array', items: { type: 'integer', minimum: 0, maximum: 999 }, minItems: 200 };

/**
 * The same batch with every row under one JSON-schema grammar (masks computed while the forward pass
 * runs, then applied per row), against `free` run just before. The schema (an array of at least 200
 * small integers) cannot end within the run, so both runs generate the same number of tokens.
 */
function grammarRun(engine: Engine, reqs: GenerateRequest[]) {
  const schema = LONG_LIST;
  return constrainedRun(engine, reqs, { schema }, (s) => s.constraint({ type: 'json_schema', json_schema: { name: 'bench', schema } }));
}

/**
 * The same batch with every row forced to call tools (tool_choice "required", parallel calls: a
 * structural tag over two functions), against `free`. Each function's arguments hold a list of at
 * least 200 integers, so no row ends within the run either.
 */
function toolsRun(engine: Engine, reqs: GenerateRequest[]) {
  const parameters = { type: 'object', properties: { ids: LONG_LIST }, required: ['ids'], additionalProperties: false };
  const functions = ['lookup', 'cancel'].map((name, i) => ({ name, parameters, param: `tools[${i}].function.parameters` }));
  return constrainedRun(engine, reqs, { functions: functions.map((f) => f.name), parameters }, (s) =>
    s.toolCalls({ functions, mode: 'required', parallel: true }),
  );
}

/** `reqs` free, then all under the grammar `make` compiles (after a one-row warm-up): throughput of both and mask time per step. */
async function constrainedRun<T extends object>(
  engine: Engine,
  reqs: GenerateRequest[],
  what: T,
  make: (s: StructuredOutput) => Promise<OutputConstraint | null>,
) {
  const structured = new StructuredOutput(engine.tokenizer, {
    vocabSize: engine.model.dims.vocabSize,
    stopTokenIds: [...engine.scheduler.eosTokenIds],
  });
  const compileStart = performance.now();
  const constraint = await make(structured);
  const compile_ms = +(performance.now() - compileStart).toFixed(1);
  const grammarReqs = reqs.map((r) => ({ ...r, ignoreEos: false, constraint: constraint! }));
  await runRequests(engine, grammarReqs.slice(0, 1), false); // warm-up: the matcher's first masks
  const free = await runRequests(engine, reqs, true);
  const [maskMs, steps] = [engine.scheduler.maskMs, engine.scheduler.steps.decode];
  const constrained = await runRequests(engine, grammarReqs, true);
  const mask_ms_per_decode_step = +((engine.scheduler.maskMs - maskMs) / (engine.scheduler.steps.decode - steps)).toFixed(2);
  return { ...what, compile_ms, free, constrained, mask_ms_per_decode_step };
}

/** loraserve's base-weight precisions and llama.cpp's weight type that matches each. */
const PRECISIONS = [
  { ours: 'fp32', quantize: null, peer: 'F32' },
  { ours: 'int8', quantize: 'int8', peer: 'Q8_0' },
  { ours: 'int4', quantize: 'int4', peer: 'Q4_0' },
] as const;

/**
 * Adapters of the many-adapter workloads (one request each, all at once). The summary compares 32;
 * 64 shows how each side scales. llama.cpp's contexts fit: 44–69 MiB of resident memory each here
 * (KV cache, compute buffers, the adapter), so 64 take ~3–4.5 GiB.
 */
const MANY = [32, 64] as const;
const MOST = Math.max(...MANY);

type Workloads = {
  single: Throughput;
  multi_adapter: Throughput & Latency;
  no_adapter: Throughput;
  /** Keyed by the adapter count. */
  many_adapters: Record<string, Throughput & Latency>;
};

/**
 * The Qwen2.5-0.5B shape, loraserve at each precision and llama.cpp at the matching one, on the
 * same workloads (prompt 32, 32 generated, greedy, EOS ignored): (a) one stream, 4 requests one
 * after another, each on its adapter; (b) 32 requests over 8 adapters at once; (c) 32 requests
 * without adapters; (d) 32 requests over 32 adapters at once, one each (ours in one batch, llama.cpp
 * one context per adapter), and 64 over 64. Then decode-step times and resident memory. The engine
 * holds all 64 adapters in slots 1..64; (a) and (b) use the first 8.
 */
async function qwenSection(dir: string, opts: BenchOptions) {
  const shape = 'qwen2-0.5b';
  const threads = opts.threads ?? 0;
  const provider = opts.provider ?? 'cpu';
  const { targets } = SHAPES[shape];
  const base = join(dir, shape);
  log(`writing a ${SHAPES[shape].label} (about a minute)`);
  const modelDir = writeShape(join(base, 'model'), shape);
  const model = loadHfModel(modelDir);
  const adapters = await writeAdapters(base, model, shape, MOST);
  const vocab = model.dims.vocabSize;
  // The first 32 are the other workloads' prompts (the same generator, the same seed).
  const manyPs = prompts(MOST, 32, vocab);
  const ps = manyPs.slice(0, CONCURRENT);
  const generate = 32;
  const singles = 4;
  const ours: Record<string, Workloads> = {};
  const rss: Record<string, RssProbeResult> = {};
  let steps = { cached_64: 0, cached_512: 0 };
  for (const p of PRECISIONS) {
    const engine = await loraEngine(
      modelDir,
      adapters,
      { threads, provider, slots: MOST, maxBatch: MOST, ...(p.quantize ? { quantize: p.quantize } : {}) },
      targets,
    );
    await runRequests(
      engine,
      requests([ps[0]!], 2, () => 1),
      false,
    );
    log(
      `qwen2-0.5b ${p.ours}: one stream, 32 requests over 8 adapters, 32 without, ${MANY.map((n) => `${n} over ${n}`).join(', ')} adapters`,
    );
    const w: Workloads = {
      single: await runRequests(engine, requests(ps.slice(0, singles), generate, slotOfRow(ADAPTERS)), false),
      multi_adapter: await runRequests(engine, requests(ps, generate, slotOfRow(ADAPTERS)), true),
      no_adapter: await runRequests(
        engine,
        requests(ps, generate, () => 0),
        true,
      ),
      many_adapters: {},
    };
    for (const n of MANY)
      w.many_adapters[n] = await runRequests(
        engine,
        requests(manyPs.slice(0, n), generate, (i) => 1 + i),
        true,
      );
    ours[p.ours] = w;
    if (p.ours === 'fp32') {
      const rowSlots = ps.map((_, i) => slotOfRow(ADAPTERS)(i));
      const [at64, at512] = await decodeStepCosts(engine, rowSlots, [64, 512], 2);
      steps = { cached_64: at64!.ms, cached_512: at512!.ms };
    }
    await engine.close();
    log(`qwen2-0.5b ${p.ours}: resident memory of a serving engine, in a child process`);
    rss[p.ours] = await rssProbe({
      modelDir,
      slots: ADAPTERS,
      maxRank: RANK,
      loraModules: [...targets],
      threads,
      provider,
      promptTokens: 32,
      generate: 8,
      ...(p.quantize ? { quantize: p.quantize } : {}),
    });
  }
  log("qwen2-0.5b int4: where a decode step's time goes (ORT profile), one stream and 32 rows over 8 adapters");
  const stepProfile = await profileDecodeSteps(
    { modelDir, maxRank: RANK, loraModules: [...targets], slots: ADAPTERS, maxBatch: CONCURRENT, threads, provider, quantize: 'int4' },
    adapters.slice(0, ADAPTERS),
    [
      { slots: [1], cached: 64 },
      { slots: ps.map((_, i) => slotOfRow(ADAPTERS)(i)), cached: 64 },
    ],
    base,
  );
  // llama.cpp runs on the CPU here: a GPU-provider run compares nothing with it.
  const peer = provider === 'cpu' ? await llamaPeer(base, model, modelDir, manyPs, generate, singles, threads) : null;
  model.weights.close();

  const fp32 = ours.fp32!;
  // Each workload's tokens/s at every precision, ours and the peer's (keyed by weight type).
  const figures = (pick: (w: Workloads) => number, peerPick: (r: LlamaPeerResult) => number | undefined) => ({
    ours: Object.fromEntries(PRECISIONS.map((p) => [p.ours, pick(ours[p.ours]!)])),
    peer: Object.fromEntries(
      PRECISIONS.flatMap((p) => {
        const v = peer?.[p.peer] ? peerPick(peer[p.peer]!) : undefined;
        return v === undefined ? [] : [[p.peer, v]];
      }),
    ),
  });
  const workloads = {
    single: figures(
      (w) => w.single.tokens_per_s,
      (r) => r.single.tokens_per_s,
    ),
    multi_adapter: figures(
      (w) => w.multi_adapter.tokens_per_s,
      (r) => r.multiAdapter.tokens_per_s,
    ),
    many_adapters: figures(
      (w) => w.many_adapters[MANY[0]]!.tokens_per_s,
      (r) => r.manyAdapters.find((m) => m.contexts === MANY[0])?.tokens_per_s,
    ),
  };
  const peerOf = Object.fromEntries(PRECISIONS.map((p) => [p.ours, p.peer]));
  const equal = (w: keyof typeof workloads) => equalPrecisionRatio(workloads[w].ours, workloads[w].peer, peerOf);
  const best = (w: keyof typeof workloads) => bestRatio(workloads[w].ours, workloads[w].peer);
  const mib = (bytes: number) => Math.round(bytes / 2 ** 20);
  return {
    details: {
      model: SHAPES[shape].label,
      adapters: ADAPTERS,
      many_adapters: MANY,
      rank: RANK,
      targets,
      promptTokens: 32,
      generatedTokens: generate,
      loraserve: ours,
      decode_step_ms: steps,
      step_profile_int4: stepProfile,
      rss_mib: Object.fromEntries(
        Object.entries(rss).map(([k, r]) => [
          k,
          { rss: mib(r.rss_bytes), weights_f32: mib(r.weights_f32_bytes), kv: +(r.kv_bytes / 2 ** 20).toFixed(1) },
        ]),
      ),
      llama_cpp: peer ?? 'not run: node-llama-cpp is not installed (a dev dependency)',
      // The fastest precision of each side per workload: what the peer_best_* ratios compare.
      best_precision: Object.fromEntries(
        Object.entries(workloads).map(([w, f]) => [
          w,
          { loraserve: bestPrecision(f.ours)?.precision ?? null, llama_cpp: bestPrecision(f.peer)?.precision ?? null },
        ]),
      ),
    },
    summary: {
      qwen_tokens_per_s_batch_1: fp32.single.tokens_per_s,
      qwen_tokens_per_s_batch_32: fp32.multi_adapter.tokens_per_s,
      rss_vs_weights: +(rss.fp32!.rss_bytes / rss.fp32!.weights_f32_bytes).toFixed(3),
      peer_multi_adapter_ratio: equal('multi_adapter'),
      peer_single_stream_ratio: equal('single'),
      peer_many_adapters_ratio: equal('many_adapters'),
      peer_best_multi_adapter_ratio: best('multi_adapter'),
      peer_best_single_stream_ratio: best('single'),
      peer_best_many_adapters_ratio: best('many_adapters'),
      int4_vs_fp32_single: +(ours.int4!.single.tokens_per_s / fp32.single.tokens_per_s).toFixed(3),
      // 32 requests over 8 adapters: int4 against int8 (≥ 1 when the smallest precision is also the fastest in the batch)
      int4_vs_int8_batch: +(ours.int4!.multi_adapter.tokens_per_s / ours.int8!.multi_adapter.tokens_per_s).toFixed(3),
      // what LoRA costs at int4: 32 requests over 8 adapters ÷ the same 32 without adapters
      lora_vs_base_int4: +(ours.int4!.multi_adapter.tokens_per_s / ours.int4!.no_adapter.tokens_per_s).toFixed(3),
      int4_rss_vs_fp32: +(rss.int4!.rss_bytes / rss.fp32!.rss_bytes).toFixed(3),
    },
  };
}

/**
 * llama.cpp on the same model and adapters, written as GGUF at each precision; null without
 * node-llama-cpp. `ps` are the many-adapter workloads' prompts; the first 32 serve the others.
 */
async function llamaPeer(
  dir: string,
  model: HfModel,
  modelDir: string,
  ps: number[][],
  generate: number,
  singles: number,
  threads: number,
): Promise<Record<string, LlamaPeerResult> | null> {
  try {
    await import('node-llama-cpp');
  } catch {
    log('llama.cpp peer skipped: node-llama-cpp is not installed');
    return null;
  }
  const ggufAdapters = Array.from({ length: MOST }, (_, i) => {
    const path = join(dir, `adapter-${i}.gguf`);
    writeGgufLora(join(dir, `adapter-${i}`), model, path);
    return path;
  });
  const results: Record<string, LlamaPeerResult> = {};
  for (const p of PRECISIONS) {
    const ggufModel = join(dir, `model-${p.peer}.gguf`);
    log(`llama.cpp ${p.peer}: writing the GGUF, then the same four workloads`);
    writeGgufModel(modelDir, ggufModel, p.peer);
    results[p.peer] = await runLlamaPeer({
      ggufModel,
      ggufAdapters: ggufAdapters.slice(0, ADAPTERS),
      manyAdapters: MANY.map((n) => ({ adapters: ggufAdapters.slice(0, n), prompts: ps.slice(0, n) })),
      prompts: ps.slice(0, CONCURRENT),
      genTokens: generate,
      threads: threads || cpus().length,
      singleRequests: singles,
    });
    await rm(ggufModel, { force: true });
  }
  return results;
}

/**
 * The Vulkan device WebGPU runs on (as vulkaninfo names it), and a warning when it is Mesa's
 * lavapipe: a CPU implementation whose timings say nothing about a GPU (its results still count).
 */
function vulkanDevice(): { vulkan_device: string; timing_note?: string } {
  const info = spawnSync('vulkaninfo', ['--summary'], { encoding: 'utf8' });
  const device = /deviceName\s*=\s*(.+)/.exec(info.stdout ?? '')?.[1]?.trim() ?? 'unknown (vulkaninfo not installed)';
  return /llvmpipe/i.test(device)
    ? {
        vulkan_device: device,
        timing_note: 'lavapipe is Vulkan on the CPU: these timings are meaningless for speed; only the results count',
      }
    : { vulkan_device: device };
}

/** Runs the benchmark; `details` holds every figure, `summary` the ratios the issues track. */
export async function runBench(opts: BenchOptions): Promise<{ details: Record<string, unknown>; summary: Record<string, unknown> }> {
  const dir = await mkdtemp(join(tmpdir(), 'loraserve-bench-'));
  const provider = opts.provider ?? 'cpu';
  const details: Record<string, unknown> = {
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version, threads: opts.threads ?? 'all cores' },
    provider,
    ...(provider === 'webgpu' ? vulkanDevice() : {}),
    quick: opts.quick,
  };
  let summary: Record<string, unknown> = {};
  try {
    if (!opts.shape || opts.shape === 'gpt2-small') {
      const r = await gpt2Section(dir, opts);
      details['gpt2-small'] = r.details;
      summary = { ...summary, ...r.summary };
    }
    if (opts.shape === 'qwen2-0.5b' || (!opts.shape && !opts.quick)) {
      const r = await qwenSection(dir, opts);
      details['qwen2-0.5b'] = r.details;
      summary = { ...summary, ...r.summary };
    }
    return { details, summary };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
