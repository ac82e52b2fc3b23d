import { ConfigError, EmptyPromptError, InvalidRequestError, PromptTooLongError, UnsupportedParameterError } from '../errors.js';
import {
  buildGraph,
  INPUT,
  loadHfModel,
  OUTPUT,
  quantizeBase,
  type BaseQuantization,
  type HfModel,
  type KvResidency,
  type QuantizeMode,
} from '../model/index.js';
import { SlotTable, selectModules, parseAdapter, singleSlot, type AdapterMix, type ParsedAdapter } from '../lora/index.js';
import { OnnxSession, type ExecutionProvider, type Feed, type HostTensor, type TransferCounter } from './onnx-backend.js';
import { KvCache, type KvRows } from './kv-cache.js';
import { DeviceKvCache } from './device-kv-cache.js';
import { DeviceLoraTables } from './device-lora.js';
import { deviceKvIndex, hostAttentionMask } from './step-inputs.js';
import { Scheduler, type ForwardInput, type ForwardOutput, type SchedulerLimits, type SequenceRequest } from './scheduler.js';
import type { Generation } from './generation.js';
import { DEFAULT_SAMPLING, type SamplingParams } from './sampler.js';
import { PrefixCache } from './prefix-cache.js';
import { Tokenizer } from '../tokenizer/index.js';

export interface EngineOptions {
  modelDir: string;
  provider?: ExecutionProvider;
  /** Adapter slots on the device, not counting slot 0 (the base model). 0 builds a base-only graph. */
  slots?: number;
  /** Largest LoRA rank a slot holds; smaller ranks are zero-padded. */
  maxRank?: number;
  /** Linear layers that get LoRA slots: "all-linear" or module names (suffix-matched like PEFT's list). */
  loraModules?: readonly string[] | 'all-linear';
  maxBatch?: number;
  maxBatchTokens?: number;
  /** Most prompt tokens of one request read per step; longer prompts are read in chunks between decode steps. */
  prefillChunk?: number;
  maxContext?: number;
  threads?: number;
  /** Weight-only quantization of the base model's linear layers and LM head; null keeps float32. */
  quantize?: QuantizeMode | null;
  /** Where quantized weights are cached between starts; null: `.loraserve-cache` in the model folder. */
  quantCacheDir?: string | null;
  /** Where the KV cache lives between steps; `auto`: on the device for a GPU provider, else the host. */
  kvCache?: KvResidency | 'auto';
  /** Bytes of cached prompt prefixes kept after their requests end (prefix-cache.ts); 0 turns the cache off. */
  prefixCacheBytes?: number;
  /** ORT's per-node profile of the step graph, written to `<prefix>_<time>.json` at close (the bench's step profile). */
  profilePrefix?: string | null;
}

/** The engine's defaults; the server's configuration starts from them. */
export const ENGINE_DEFAULTS = {
  provider: 'cpu',
  slots: 8,
  maxRank: 16,
  loraModules: 'all-linear',
  maxBatch: 32,
  maxBatchTokens: 4096,
  prefillChunk: 512,
  threads: 0,
  quantize: null,
  quantCacheDir: null,
  kvCache: 'auto',
  prefixCacheBytes: 1024 * 1024 * 1024,
  profilePrefix: null,
} as const satisfies Omit<Required<EngineOptions>, 'modelDir' | 'maxContext'>;

/** What a caller asks the engine for: a sequence request whose engine-side fields may be left out. */
export type GenerateRequest = Partial<Omit<SequenceRequest, 'promptTokens' | 'sampling'>> & {
  promptTokens: number[];
  /** One adapter slot (0 = the base model); or `adapters`, a weighted mix of slots. */
  slot?: number;
  sampling?: Partial<SamplingParams>;
};

/** The resident base model: ONNX session, tokenizer, adapter slots and the batching scheduler. */
export class Engine {
  private constructor(
    readonly model: HfModel,
    readonly tokenizer: Tokenizer,
    private readonly session: OnnxSession,
    /** The cache the forward pass reads and writes (the scheduler owns its rows). */
    private readonly kv: KvCache | DeviceKvCache,
    private readonly tokenEmbedding: string,
    /** null when the engine was built without LoRA (slots = 0). */
    readonly slots: SlotTable | null,
    /** The slots' tensors resident on the device (device cache only). */
    private readonly deviceLora: DeviceLoraTables | null,
    readonly scheduler: Scheduler,
    readonly options: Required<EngineOptions>,
    /** The quantized base weights in use, or null for float32. */
    readonly quantization: BaseQuantization | null,
  ) {}

  static async create(options: EngineOptions): Promise<Engine> {
    const model = loadHfModel(options.modelDir);
    const opts: Required<EngineOptions> = {
      ...ENGINE_DEFAULTS,
      ...options,
      maxContext: Math.min(options.maxContext ?? model.dims.maxPositions, model.dims.maxPositions),
    };
    const tokenizer = await Tokenizer.load(model.dir);
    const layout = opts.slots > 0 && opts.maxRank > 0 ? { slots: opts.slots + 1, maxRank: opts.maxRank } : null;
    const loraLinears = selectModules(model.linears, opts.loraModules);
    if (layout && loraLinears.length === 0)
      throw new ConfigError(`--lora-modules ${JSON.stringify(opts.loraModules)} names no linear layer of ${model.id}`);
    const quantization = opts.quantize ? await quantizeBase(model, opts.quantize, opts.quantCacheDir ?? undefined) : null;
    const residency: KvResidency = opts.kvCache === 'auto' ? (opts.provider === 'cpu' ? 'host' : 'device') : opts.kvCache;
    // The host layout feeds a GPU provider the whole cache every step, and an empty past there is a
    // zero-sized MatMul, which ORT's WebGPU kernel does not survive.
    if (residency === 'host' && opts.provider !== 'cpu')
      throw new ConfigError(`the host KV cache runs on the cpu provider only; ${opts.provider} keeps the cache on the device`);
    const graph = buildGraph(model, layout, new Set(loraLinears.map((m) => m.name)), quantization, residency);
    const { layers, kvHeads, headDim } = model.dims;
    const presentOutputs = Array.from({ length: layers }, (_, l) => [OUTPUT.presentKey(l), OUTPUT.presentValue(l)]).flat();
    const session = await OnnxSession.create(graph, {
      provider: opts.provider,
      threads: opts.threads,
      deviceOutputs: residency === 'device' ? presentOutputs : [],
      ...(opts.profilePrefix ? { profilePrefix: opts.profilePrefix } : {}),
    });
    const kvDims = { layers, kvHeads, headDim };
    const kv =
      residency === 'device' ? await DeviceKvCache.create(kvDims, opts.maxContext, opts.provider) : new KvCache(kvDims, opts.maxContext);
    const baseBiases = () => new Map(loraLinears.flatMap((m) => (m.bias ? [[m.name, model.weights.readF32(m.bias)] as const] : [])));
    const slots = layout ? new SlotTable(layout, loraLinears, baseBiases()) : null;
    const deviceLora = slots && residency === 'device' ? await DeviceLoraTables.create(slots, opts.provider) : null;
    const eos = new Set(model.generation.eosTokenIds);
    if (tokenizer.eosTokenId !== null) eos.add(tokenizer.eosTokenId);
    const limits: SchedulerLimits = {
      maxBatch: opts.maxBatch,
      maxBatchTokens: opts.maxBatchTokens,
      maxContext: opts.maxContext,
      prefillChunk: Math.min(opts.prefillChunk, opts.maxBatchTokens),
    };
    const bytesPerPosition = 2 * layers * kvHeads * headDim * Float32Array.BYTES_PER_ELEMENT;
    const prefixes = opts.prefixCacheBytes > 0 ? new PrefixCache(opts.prefixCacheBytes, bytesPerPosition) : null;
    let engine: Engine;
    const scheduler = new Scheduler(
      (input) => engine.forward(input),
      kv,
      limits,
      eos,
      (ids) => tokenizer.decode(ids),
      prefixes,
    );
    engine = new Engine(
      model,
      tokenizer,
      session,
      kv,
      graph.tokenEmbedding,
      slots,
      deviceLora,
      scheduler,
      { ...opts, kvCache: residency },
      quantization,
    );
    return engine;
  }

  /** Validates a PEFT adapter against this engine's base model, rank and LoRA modules. */
  parseAdapter(configText: string, weights: Uint8Array): ParsedAdapter {
    const modules = this.slots ? new Set(this.slots.linears.map((m) => m.name)) : new Set<string>();
    return parseAdapter(configText, weights, this.model, this.options.maxRank, modules);
  }

  /** Queues a request; its tokens stream from the returned Generation. */
  generate(req: GenerateRequest): Generation {
    return this.generateChoices(req, 1)[0]!;
  }

  /**
   * Queues `n` choices of one request; the prompt is read once and its cache shared (see the scheduler).
   * What it refuses names the GenerateRequest field at fault (`param`); a server maps those to its own fields.
   */
  generateChoices(req: GenerateRequest, n: number): Generation[] {
    const room = this.options.maxContext - req.promptTokens.length;
    if (req.promptTokens.length === 0) throw new EmptyPromptError('the prompt is empty', { param: 'promptTokens' });
    if (room < 1) {
      throw new PromptTooLongError(
        `the prompt is ${req.promptTokens.length} tokens; this model's context holds ${this.options.maxContext}`,
        { param: 'promptTokens' },
      );
    }
    if (req.adapters && req.slot !== undefined)
      throw new InvalidRequestError('give either slot or adapters, not both', { param: 'adapters' });
    const adapters = req.adapters ?? singleSlot(req.slot ?? 0);
    this.checkMix(adapters);
    // A grammar decides when the output may end; these would fight it (its mask would allow nothing).
    if (req.constraint && (req.minTokens || req.ignoreEos)) {
      const param = req.minTokens ? 'minTokens' : 'ignoreEos';
      throw new UnsupportedParameterError(`${param} cannot be combined with an output constraint`, { param });
    }
    return this.scheduler.submitChoices(
      {
        promptTokens: req.promptTokens,
        adapters,
        sampling: { ...DEFAULT_SAMPLING, ...req.sampling },
        maxTokens: Math.min(req.maxTokens ?? room, room),
        stop: req.stop ?? [],
        ignoreEos: req.ignoreEos,
        minTokens: req.minTokens,
        signal: req.signal,
        onDone: req.onDone,
        onToken: req.onToken,
        logprobs: req.logprobs,
        promptLogprobs: req.promptLogprobs,
        constraint: req.constraint,
        tenant: req.tenant,
        priority: req.priority,
        prefixKey: req.prefixKey,
      },
      n,
    );
  }

  /** A row's adapters must be distinct filled slots with finite weights; DoRA is defined for one adapter at weight 1. */
  private checkMix(mix: AdapterMix): void {
    const fail = (why: string): never => {
      throw new InvalidRequestError(`adapter mix: ${why}`, { param: 'adapters' });
    };
    if (mix.length && !this.slots) fail('this engine was built without adapter slots');
    const seen = new Set<number>();
    for (const { slot, weight } of mix) {
      if (!Number.isInteger(slot) || slot < 1 || slot >= this.slots!.slots) fail(`slot ${slot} is outside 1..${this.slots!.slots - 1}`);
      if (seen.has(slot)) fail(`slot ${slot} appears twice`);
      if (!Number.isFinite(weight)) fail(`the weight of slot ${slot} is not a finite number`);
      if (this.slots!.isDora(slot) && (mix.length > 1 || weight !== 1))
        fail(`slot ${slot} holds a DoRA adapter, whose rescaling is defined for that adapter alone at weight 1`);
      seen.add(slot);
    }
  }

  /** The KV cache's rows, for driving `forward` by hand while the scheduler is idle (tests, benchmarks). */
  get cache(): KvRows {
    return this.kv;
  }

  /** Where the KV cache lives (resolved from the `kvCache` option). */
  get kvResidency(): KvResidency {
    return this.kv instanceof DeviceKvCache ? 'device' : 'host';
  }

  /** Bytes fed to and returned by the step graph so far (host↔device transfers on a GPU provider). */
  get transfers(): Readonly<TransferCounter> {
    return this.session.transfers;
  }

  /**
   * One batched forward pass, exactly as the scheduler runs it (exposed for tests and benchmarks):
   * reads each row's cached positions, writes its new keys/values after them.
   */
  async forward(input: ForwardInput): Promise<ForwardOutput> {
    const { layers, kvHeads, headDim } = this.model.dims;
    const i64 = (data: BigInt64Array, dims: number[]): HostTensor => ({ type: 'int64', data, dims });
    const f32 = (data: Float32Array, dims: number[]): HostTensor => ({ type: 'float32', data, dims });
    const { batch, seq, rows, counts } = input;
    this.kv.checkRoom(rows, counts);
    const feeds: Record<string, Feed> = {
      [INPUT.embeds]: f32(this.model.weights.readRowsF32(this.tokenEmbedding, input.ids), [batch, seq, this.model.dims.hidden]),
      [INPUT.logitRows]: i64(input.logitRows, [input.logitRows.length]),
    };
    if (this.kv instanceof DeviceKvCache) {
      const kv = this.kv;
      if (this.deviceLora) Object.assign(feeds, await this.deviceLora.feeds(input.adapters));
      await kv.flush();
      feeds[INPUT.positions] = { type: 'int32', data: Int32Array.from(input.positions, Number), dims: [batch, seq] };
      feeds[INPUT.kvRows] = i64(
        BigInt64Array.from(rows, (r) => BigInt(r)),
        [batch],
      );
      feeds[INPUT.kvIndex] = i64(deviceKvIndex(input, rows, kvHeads, kv.scratchColumn), [batch, kvHeads, seq, 3]);
      const out = await this.session.run({ ...feeds, ...kv.feeds() });
      kv.commit(out.device, rows, counts);
      return { logits: out.host[OUTPUT.logits]!.data };
    }
    if (this.slots) Object.assign(feeds, this.loraFeeds(input));
    const past = this.kv.past(rows);
    feeds[INPUT.positions] = i64(input.positions, [batch, seq]);
    feeds[INPUT.mask] = i64(hostAttentionMask(input, past.length), [batch, past.length + seq]);
    for (let l = 0; l < layers; l++) {
      feeds[INPUT.pastKey(l)] = f32(past.keys[l]!, [batch, kvHeads, past.length, headDim]);
      feeds[INPUT.pastValue(l)] = f32(past.values[l]!, [batch, kvHeads, past.length, headDim]);
    }
    const { host } = await this.session.run(feeds);
    const take = (name: string) => host[name]!.data;
    this.kv.append(
      rows,
      counts,
      seq,
      Array.from({ length: layers }, (_, l) => take(OUTPUT.newKey(l))),
      Array.from({ length: layers }, (_, l) => take(OUTPUT.newValue(l))),
    );
    return { logits: take(OUTPUT.logits) };
  }

  /** The adapters this step's rows use, packed side by side (see GraphOps.linear); row weights repeated per token. */
  private loraFeeds(input: ForwardInput): Record<string, HostTensor> {
    const f32 = (data: Float32Array, dims: number[]): HostTensor => ({ type: 'float32', data, dims });
    const slots = this.slots!;
    const packed = slots.pack(input.adapters.flatMap((mix) => mix.map((a) => a.slot)));
    const { columns, rows } = SlotTable.rowWeights(packed, input.adapters);
    const { width: W, adapters: U } = packed;
    const tokens = input.batch * input.seq;
    const feeds: Record<string, HostTensor> = {
      [INPUT.loraColumns]: f32(perToken(columns, W, input.seq), [tokens, W]),
      [INPUT.loraRows]: f32(perToken(rows, U, input.seq), [tokens, U]),
    };
    for (const m of slots.linears) {
      feeds[INPUT.loraA(m.name)] = f32(packed.a.get(m.name)!, [W, m.inFeatures]);
      feeds[INPUT.loraB(m.name)] = f32(packed.b.get(m.name)!, [W, m.outFeatures]);
      feeds[INPUT.loraGain(m.name)] = f32(packed.gain.get(m.name)!, [U, m.outFeatures]);
      feeds[INPUT.loraShift(m.name)] = f32(packed.shift.get(m.name)!, [U, m.outFeatures]);
    }
    return feeds;
  }

  async close(): Promise<void> {
    await this.scheduler.idle();
    this.scheduler.prefixes?.clear();
    if (this.kv instanceof DeviceKvCache) await this.kv.close();
    await this.deviceLora?.close();
    await this.session.release();
    this.model.weights.close();
  }
}

/** [B, k] per-row values → [B·seq, k]: each row's repeated for its seq tokens. */
function perToken(perRow: Float32Array, k: number, seq: number): Float32Array {
  if (seq === 1) return perRow;
  const out = new Float32Array(perRow.length * seq);
  for (let r = 0; r < perRow.length / k; r++) {
    const row = perRow.subarray(r * k, (r + 1) * k);
    for (let t = 0; t < seq; t++) out.set(row, (r * seq + t) * k);
  }
  return out;
}
