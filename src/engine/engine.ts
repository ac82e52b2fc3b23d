import { ConfigError, EmptyPromptError, InvalidRequestError, PromptTooLongError, UnsupportedParameterError } from '../errors.js';
import {
  buildGraph,
  INPUT,
  loadHfModel,
  OUTPUT,
  quantizeBase,
  type BaseQuantization,
  type HfModel,
  type QuantizeMode,
} from '../model/index.js';
import { SlotTable, selectModules, parseAdapter, singleSlot, type AdapterMix, type ParsedAdapter } from '../lora/index.js';
import { OnnxSession, type ExecutionProvider, type HostTensor } from './onnx-backend.js';
import { Scheduler, type ForwardInput, type ForwardOutput, type SchedulerLimits, type SequenceRequest } from './scheduler.js';
import type { Generation } from './generation.js';
import { DEFAULT_SAMPLING, type SamplingParams } from './sampler.js';
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
    private readonly tokenEmbedding: string,
    /** null when the engine was built without LoRA (slots = 0). */
    readonly slots: SlotTable | null,
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
    const graph = buildGraph(model, layout, new Set(loraLinears.map((m) => m.name)), quantization);
    const session = await OnnxSession.create(graph, { provider: opts.provider, threads: opts.threads });
    const slots = layout ? new SlotTable(layout, loraLinears) : null;
    const eos = new Set(model.generation.eosTokenIds);
    if (tokenizer.eosTokenId !== null) eos.add(tokenizer.eosTokenId);
    const limits: SchedulerLimits = {
      maxBatch: opts.maxBatch,
      maxBatchTokens: opts.maxBatchTokens,
      maxContext: opts.maxContext,
      prefillChunk: Math.min(opts.prefillChunk, opts.maxBatchTokens),
    };
    let engine: Engine;
    const scheduler = new Scheduler(
      (input) => engine.forward(input),
      model.dims,
      limits,
      eos,
      (ids) => tokenizer.decode(ids),
    );
    engine = new Engine(model, tokenizer, session, graph.tokenEmbedding, slots, scheduler, opts, quantization);
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

  /** Queues `n` choices of one request; the prompt is read once and its cache shared (see the scheduler). */
  generateChoices(req: GenerateRequest, n: number): Generation[] {
    const room = this.options.maxContext - req.promptTokens.length;
    if (req.promptTokens.length === 0) throw new EmptyPromptError('the prompt is empty', { param: 'messages' });
    if (room < 1) {
      throw new PromptTooLongError(
        `the prompt is ${req.promptTokens.length} tokens; this model's context holds ${this.options.maxContext}`,
        { param: 'messages' },
      );
    }
    if (req.adapters && req.slot !== undefined)
      throw new InvalidRequestError('give either slot or adapters, not both', { param: 'adapters' });
    const adapters = req.adapters ?? singleSlot(req.slot ?? 0);
    this.checkMix(adapters);
    // A grammar decides when the output may end; these would fight it (its mask would allow nothing).
    if (req.constraint && (req.minTokens || req.ignoreEos)) {
      const param = req.minTokens ? 'min_tokens' : 'ignore_eos';
      throw new UnsupportedParameterError(`${param} cannot be combined with response_format`, { param });
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

  /** One batched forward pass, exactly as the scheduler runs it (exposed for tests and benchmarks). */
  async forward(input: ForwardInput): Promise<ForwardOutput> {
    const { layers, kvHeads, headDim } = this.model.dims;
    const i64 = (data: BigInt64Array, dims: number[]): HostTensor => ({ type: 'int64', data, dims });
    const f32 = (data: Float32Array, dims: number[]): HostTensor => ({ type: 'float32', data, dims });
    const { batch, seq, past } = input;
    const feeds: Record<string, HostTensor> = {
      [INPUT.embeds]: f32(this.model.weights.readRowsF32(this.tokenEmbedding, input.ids), [batch, seq, this.model.dims.hidden]),
      [INPUT.positions]: i64(input.positions, [batch, seq]),
      [INPUT.mask]: i64(input.mask, [batch, past.length + seq]),
      [INPUT.logitRows]: i64(input.logitRows, [input.logitRows.length]),
    };
    for (let l = 0; l < layers; l++) {
      feeds[INPUT.pastKey(l)] = f32(past.keys[l]!, [batch, kvHeads, past.length, headDim]);
      feeds[INPUT.pastValue(l)] = f32(past.values[l]!, [batch, kvHeads, past.length, headDim]);
    }
    if (this.slots) {
      const packed = this.slots.pack(input.adapters.flatMap((mix) => mix.map((a) => a.slot)));
      const { columns, rows } = SlotTable.rowWeights(packed, input.adapters);
      const { width: W, adapters: U } = packed;
      feeds[INPUT.loraColumns] = f32(columns, [batch, W]);
      feeds[INPUT.loraRows] = f32(rows, [batch, U]);
      for (const m of this.slots.linears) {
        feeds[INPUT.loraA(m.name)] = f32(packed.a.get(m.name)!, [W, m.inFeatures]);
        feeds[INPUT.loraB(m.name)] = f32(packed.b.get(m.name)!, [W, m.outFeatures]);
        feeds[INPUT.loraBias(m.name)] = f32(packed.bias.get(m.name)!, [U, m.outFeatures]);
        feeds[INPUT.loraDora(m.name)] = f32(packed.dora.get(m.name)!, [U, m.outFeatures]);
      }
    }
    const out = await this.session.run(feeds);
    const take = (name: string) => out[name]!.data as Float32Array;
    return {
      logits: take(OUTPUT.logits),
      keys: Array.from({ length: layers }, (_, l) => take(OUTPUT.newKey(l))),
      values: Array.from({ length: layers }, (_, l) => take(OUTPUT.newValue(l))),
    };
  }

  async close(): Promise<void> {
    await this.scheduler.idle();
    await this.session.release();
    this.model.weights.close();
  }
}
