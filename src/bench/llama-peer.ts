/**
 * llama.cpp (through node-llama-cpp) as the peer in our benchmark: the same model, written as
 * GGUF by src/testing, run on the same workloads as loraserve. node-llama-cpp is a dev
 * dependency and is imported only when a peer run is asked for, so the server never needs it.
 *
 * How llama.cpp gets its best run here: every request is driven by `controlledEvaluate` on its
 * own context sequence, the prompt in one call and then one token per call, greedy (temperature
 * 0), EOS ignored, F16 KV cache and flash attention "auto" (llama.cpp's defaults). All sequences
 * of a context are stepped together (see `runOnContext`), so every decode holds all of them,
 * the prefill of all prompts included (batch size = sequences × prompt length). LoRA is a context option in
 * llama.cpp (one adapter set per context, as in its server), so requests for different adapters
 * run on different contexts: one per adapter, the adapter's requests as that context's
 * sequences, all contexts running at once (`contextsAtOnce`; measured 10.7 vs 8.8 tok/s for one
 * context at a time in shared/notes/llama-cpp-peer.md). Threads: `maxThreads` caps all contexts
 * together, so contexts running at once share the thread budget (each gets 1..`threads`, never
 * more than `threads` in total) — the same budget loraserve's ONNX Runtime gets. The many-adapter
 * workload (d) is (b) with one request per adapter: as many contexts as requests, one sequence each,
 * so every decode holds one row — the multi-tenant case (many adapters, a request or two each).
 */
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';
import { ProviderUnavailableError } from '../errors.js';

type NodeLlamaCpp = typeof import('node-llama-cpp');

export interface LlamaPeerOptions {
  /** GGUF model written by `writeGgufModel`. */
  ggufModel: string;
  /** LoRA GGUF files; request i of the multi-adapter workload uses adapter i mod their count. */
  ggufAdapters: readonly string[];
  /** Prompt token ids; request i uses prompts[i]. Every workload sends prompts.length requests, the single stream `singleRequests`. */
  prompts: readonly (readonly number[])[];
  genTokens: number;
  threads: number;
  /** Requests of workload (a), one after another, request i on adapter i mod count (default 1). */
  singleRequests?: number;
  /** Contexts of workloads (b) and (d) that run at the same time (default: all of them). */
  contextsAtOnce?: number;
  /**
   * Workload (d), run once per entry: request i on adapters[i] with prompts[i], one request per
   * adapter, so one context each (llama.cpp applies one adapter set per context).
   */
  manyAdapters?: ReadonlyArray<{ adapters: readonly string[]; prompts: readonly (readonly number[])[] }>;
}

export interface PeerWorkload {
  requests: number;
  tokens: number;
  seconds: number;
  tokens_per_s: number;
}

export interface LlamaPeerResult {
  /** The weight type of the GGUF model: F32, F16, Q8_0, Q4_0. */
  precision: string;
  /** (a) one stream: one request at a time, on the adapter's context. */
  single: PeerWorkload;
  /** (b) all requests at once over the adapters: one context per adapter, its requests in lockstep. */
  multiAdapter: PeerWorkload;
  /** (c) all requests at once, no adapter: one context, every request a sequence, lockstep. */
  noAdapter: PeerWorkload;
  /** (d) one request per adapter, all at once, one context each: one per entry of `manyAdapters`. */
  manyAdapters: ManyAdaptersWorkload[];
}

export interface ManyAdaptersWorkload extends PeerWorkload {
  contexts: number;
  /** llama.cpp's memory for one such context (KV cache, compute buffers; not the adapter), as node-llama-cpp estimates it, MiB. */
  estimated_mib_per_context: number;
  /**
   * Growth of this process's resident memory per context, measured with the contexts open after the
   * run (adapters included). A floor once earlier contexts' freed memory is reused: only the first
   * weight type's run starts from fresh memory.
   */
  rss_mib_per_context: number;
}

async function loadNodeLlamaCpp(): Promise<NodeLlamaCpp> {
  try {
    return await import('node-llama-cpp');
  } catch (cause) {
    throw new ProviderUnavailableError(
      'node-llama-cpp is not installed: it is a dev dependency (npm ci without --omit=dev) and only the llama.cpp peer benchmark needs it',
      { cause },
    );
  }
}

/** general.file_type (llama_ftype) → the name we report. */
const FILE_TYPES: Record<number, string> = { 0: 'F32', 1: 'F16', 2: 'Q4_0', 7: 'Q8_0' };

let shared: Promise<Llama> | undefined;

/**
 * One llama.cpp binding per process: node-llama-cpp tests its prebuilt binary in a child process
 * on every `getLlama` (seconds), so it is loaded once and kept.
 */
async function llamaWithThreads(threads: number): Promise<Llama> {
  shared ??= loadNodeLlamaCpp().then(({ getLlama, LlamaLogLevel }) =>
    getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error }).catch((cause: unknown) => {
      throw new ProviderUnavailableError(
        "llama.cpp's prebuilt CPU binary did not load: only @node-llama-cpp/linux-x64 is installed (package.json overrides the other platforms with an empty stub)",
        { cause },
      );
    }),
  );
  try {
    const llama = await shared;
    llama.maxThreads = threads;
    return llama;
  } catch (err) {
    shared = undefined;
    throw err;
  }
}

async function openModel(ggufModel: string, threads: number): Promise<{ model: LlamaModel; precision: string }> {
  const llama = await llamaWithThreads(threads);
  const model = await llama.loadModel({ modelPath: ggufModel, gpuLayers: 0 });
  const fileType = (model.fileInfo.metadata.general as { file_type?: number }).file_type;
  return { model, precision: FILE_TYPES[fileType ?? -1] ?? `file_type ${fileType}` };
}

interface ContextPlan {
  adapter: string | null;
  sequences: number;
  promptTokens: number;
  genTokens: number;
  threads: number;
  /** Make the KV cache F32 (default F16, llama.cpp's own default) for exact comparisons. */
  f32Cache?: boolean;
}

/** A context with all its sequences taken up front (a sequence is reused, its history cleared, per request). */
interface PeerContext {
  context: LlamaContext;
  sequences: LlamaContextSequence[];
}

async function createContext(model: LlamaModel, p: ContextPlan): Promise<PeerContext> {
  const context = await model.createContext({
    sequences: p.sequences,
    contextSize: p.promptTokens + p.genTokens + 1,
    // The whole prefill of every sequence in one decode.
    batchSize: Math.max(p.sequences * p.promptTokens, p.sequences),
    threads: p.threads,
    flashAttention: 'auto',
    ...(p.adapter ? { lora: { adapters: [{ filePath: p.adapter }] } } : {}),
    ...(p.f32Cache ? { experimentalKvCacheKeyType: 'F32' as const, experimentalKvCacheValueType: 'F32' as const } : {}),
  });
  return { context, sequences: Array.from({ length: p.sequences }, () => context.getSequence()) };
}

const GREEDY = { generateNext: { token: true, options: { temperature: 0 } } } as const;

type Evaluated = Awaited<ReturnType<LlamaContextSequence['controlledEvaluate']>>;

function lastToken(out: Evaluated): Token {
  const token = out[out.length - 1]?.next.token;
  if (token === undefined || token === null) throw new Error('llama.cpp returned no token');
  return token;
}

/**
 * Greedy generation of every prompt on its own sequence of one context, EOS ignored, in
 * lockstep: each step issues every sequence's call in the same tick and waits for all of them,
 * so each decode holds every sequence (the prefill too). Left to itself, node-llama-cpp's batcher
 * dispatches on the next event-loop turn, before the sequence whose sampling finished last has
 * queued its token: every decode then holds N−1 of N sequences (checked by counting them).
 */
async function runOnContext({ sequences }: PeerContext, prompts: readonly (readonly number[])[], genTokens: number): Promise<number[][]> {
  if (prompts.length > sequences.length) throw new RangeError(`${prompts.length} requests for a context of ${sequences.length} sequences`);
  if (prompts.some((p) => p.length === 0)) throw new RangeError('a prompt needs at least one token');
  const active = sequences.slice(0, prompts.length);
  await Promise.all(active.map((s) => s.clearHistory()));
  let next = (
    await Promise.all(
      active.map((s, i) => {
        const p = prompts[i]! as Token[];
        return s.controlledEvaluate([...p.slice(0, -1), [p[p.length - 1]!, GREEDY]]);
      }),
    )
  ).map(lastToken);
  const tokens = next.map((t) => [t as number]);
  for (let step = 1; step < genTokens; step++) {
    next = (await Promise.all(active.map((s, i) => s.controlledEvaluate([[next[i]!, GREEDY]])))).map(lastToken);
    next.forEach((t, i) => tokens[i]!.push(t));
  }
  return tokens;
}

const generated = (outs: number[][]) => outs.reduce((a, o) => a + o.length, 0);

async function timed(run: () => Promise<number>, requests: number): Promise<PeerWorkload> {
  const start = performance.now();
  const tokens = await run();
  const seconds = (performance.now() - start) / 1000;
  return { requests, tokens, seconds: +seconds.toFixed(3), tokens_per_s: +(tokens / seconds).toFixed(2) };
}

/** Runs workloads (a), (b), (c) and, when asked, (d) on llama.cpp and reports generated tokens per second (prefill included). */
export async function runLlamaPeer(o: LlamaPeerOptions): Promise<LlamaPeerResult> {
  if (o.prompts.length === 0) throw new RangeError('runLlamaPeer needs at least one prompt');
  const promptTokens = Math.max(...o.prompts.map((p) => p.length));
  const plan = (adapter: string | null, sequences: number): ContextPlan => ({
    adapter,
    sequences,
    promptTokens,
    genTokens: o.genTokens,
    threads: o.threads,
  });
  const adapters: Array<string | null> = o.ggufAdapters.length ? [...o.ggufAdapters] : [null];
  const { model, precision } = await openModel(o.ggufModel, o.threads);
  const withContexts = async <T>(plans: ContextPlan[], use: (contexts: PeerContext[]) => Promise<T>): Promise<T> => {
    const contexts: PeerContext[] = [];
    try {
      for (const p of plans) contexts.push(await createContext(model, p));
      return await use(contexts);
    } finally {
      for (const c of contexts) await c.context.dispose();
    }
  };
  try {
    // Warm-up, untimed: the first decode pays llama.cpp's graph allocation.
    await withContexts([plan(adapters[0]!, 1)], ([c]) => runOnContext(c!, [o.prompts[0]!], 2));

    const singleRequests = o.singleRequests ?? 1;
    const single = await withContexts(
      adapters.map((a) => plan(a, 1)),
      (contexts) =>
        timed(async () => {
          let tokens = 0;
          for (let i = 0; i < singleRequests; i++)
            tokens += generated(await runOnContext(contexts[i % contexts.length]!, [o.prompts[i % o.prompts.length]!], o.genTokens));
          return tokens;
        }, singleRequests),
    );

    const atOnce = Math.max(1, o.contextsAtOnce ?? Number.MAX_SAFE_INTEGER);
    /** Request i on adapter i mod count: one context per adapter, its requests as sequences, `atOnce` contexts at a time. */
    const overAdapters = async (list: readonly (string | null)[], prompts: readonly (readonly number[])[]) => {
      const groups = list.map((_, a) => prompts.filter((_, i) => i % list.length === a));
      const rssBefore = process.memoryUsage().rss;
      let rssWith = rssBefore;
      const workload = await withContexts(
        list.map((a, i) => plan(a, Math.max(1, groups[i]!.length))),
        async (contexts) => {
          const timing = await timed(async () => {
            let tokens = 0;
            for (let start = 0; start < contexts.length; start += atOnce) {
              const wave = contexts.slice(start, start + atOnce).map((c, k) => runOnContext(c, groups[start + k]!, o.genTokens));
              tokens += (await Promise.all(wave)).reduce((a, outs) => a + generated(outs), 0);
            }
            return tokens;
          }, prompts.length);
          // Measured after the run, the contexts still open: llama.cpp may allocate on the first decode.
          rssWith = process.memoryUsage().rss;
          return timing;
        },
      );
      return { workload, rssMibPerContext: +((rssWith - rssBefore) / list.length / 2 ** 20).toFixed(1) };
    };
    const multiAdapter = (await overAdapters(adapters, o.prompts)).workload;

    const noAdapter = await withContexts([plan(null, o.prompts.length)], ([c]) =>
      timed(async () => generated(await runOnContext(c!, o.prompts, o.genTokens)), o.prompts.length),
    );
    const manyAdapters: ManyAdaptersWorkload[] = [];
    for (const m of o.manyAdapters ?? []) {
      if (m.adapters.length !== m.prompts.length) throw new RangeError(`${m.adapters.length} adapters for ${m.prompts.length} prompts`);
      const { workload, rssMibPerContext } = await overAdapters(m.adapters, m.prompts);
      const estimate = await model.fileInsights.estimateContextResourceRequirementsV2({
        contextSize: promptTokens + o.genTokens + 1,
        modelGpuLayers: 0,
        batchSize: promptTokens,
        sequences: 1,
        flashAttention: 'auto',
      });
      manyAdapters.push({
        ...workload,
        contexts: m.adapters.length,
        estimated_mib_per_context: +(estimate.cpuRam / 2 ** 20).toFixed(1),
        rss_mib_per_context: rssMibPerContext,
      });
    }
    return { precision, single, multiAdapter, noAdapter, manyAdapters };
  } finally {
    await model.dispose();
  }
}

export interface LlamaGreedyOptions {
  ggufModel: string;
  ggufAdapter?: string;
  prompts: readonly (readonly number[])[];
  maxTokens: number;
  threads?: number;
}

/**
 * llama.cpp's greedy continuation of each prompt (EOS ignored), optionally with one LoRA adapter:
 * the reference side of the agreement check. The KV cache is F32 so that nothing but the
 * weights' own type rounds.
 */
export async function llamaGreedyTokens(o: LlamaGreedyOptions): Promise<number[][]> {
  const threads = o.threads ?? 2;
  const promptTokens = Math.max(...o.prompts.map((p) => p.length));
  const { model } = await openModel(o.ggufModel, threads);
  try {
    const { context, sequences } = await createContext(model, {
      adapter: o.ggufAdapter ?? null,
      sequences: 1,
      promptTokens,
      genTokens: o.maxTokens,
      threads,
      f32Cache: true,
    });
    try {
      const out: number[][] = [];
      for (const prompt of o.prompts) out.push(...(await runOnContext({ context, sequences }, [prompt], o.maxTokens)));
      return out;
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}
