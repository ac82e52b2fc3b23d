/**
 * What the routes share: the engine, the adapter service, configuration, metrics and keys. It
 * resolves a request's `model` for a caller, admits it (queue bound, shutdown), pins its adapter
 * and hands it to the engine.
 */
import { BASE_PREFIX_KEY, Engine, type GenerateRequest, type Generation } from '../engine/index.js';
import { join } from 'node:path';
import { ModelNotFoundError, QueueFullError, ShuttingDownError } from '../errors.js';
import { FineTuning } from '../finetune/index.js';
import { StructuredOutput } from '../grammar/index.js';
import type { CacheOccupancy, MixMember } from '../lora/index.js';
import type { GenerationDefaults } from '../model/index.js';
import { AdapterService, type ResolvedMix } from './adapter-service.js';
import type { Caller, KeyRing } from './auth.js';
import type { ServerConfig } from './config.js';
import { InFlight } from './in-flight.js';
import { Metrics, type GaugeSource, type TenantUsage } from './metrics.js';
import { TenantLimiter, type Admission } from './rate-limit.js';

export interface ResolvedModel {
  /** The name clients used: an adapter or saved mix name, or the base id. */
  id: string;
  /** The adapters the request applies with their weights ([] = the base model). */
  mix: ResolvedMix;
}

export class Serving implements GaugeSource {
  shuttingDown = false;
  readonly inFlight = new InFlight();
  /** response_format grammars for this model's vocabulary, compiled once per schema. */
  readonly structuredOutput: StructuredOutput;
  /** Per-tenant limits from the keys file, and each tenant's request counts. */
  readonly limiter: TenantLimiter;

  constructor(
    readonly engine: Engine,
    readonly adapters: AdapterService,
    readonly config: ServerConfig,
    readonly metrics: Metrics,
    readonly keys: KeyRing | null,
    /** Training files and fine-tuning jobs (OpenAI's files and fine_tuning.jobs). */
    readonly finetune: FineTuning,
  ) {
    const policies = keys?.policies ?? new Map();
    for (const [tenant, policy] of policies) engine.scheduler.setTenantWeight(tenant, policy.weight);
    this.limiter = new TenantLimiter(policies);
    metrics.gaugesFrom(this);
    this.structuredOutput = new StructuredOutput(engine.tokenizer, {
      vocabSize: engine.model.dims.vocabSize,
      stopTokenIds: [...engine.scheduler.eosTokenIds],
    });
  }

  static async create(config: ServerConfig, keys: KeyRing | null): Promise<Serving> {
    const engine = await Engine.create({
      modelDir: config.modelDir,
      provider: config.provider,
      slots: config.slots,
      maxRank: config.maxRank,
      loraModules: config.loraModules,
      maxBatch: config.maxBatch,
      maxBatchTokens: config.maxBatchTokens,
      prefillChunk: config.prefillChunk,
      threads: config.threads,
      quantize: config.quantize,
      quantCacheDir: config.quantCacheDir,
      prefixCacheBytes: config.prefixCacheBytes,
    });
    const metrics = new Metrics();
    const adapters = await AdapterService.open(engine, config, metrics.cacheEvents);
    const finetune = await FineTuning.open(
      config.finetuneDir ?? join(config.adaptersDir, '.finetune'),
      {
        baseId: engine.model.id,
        modelDir: config.modelDir,
        maxRank: config.maxRank,
        servableModules: engine.slots?.linears ?? [],
        maxSeq: engine.model.dims.maxPositions,
        publish: (name, dir) => adapters.publishFineTuned(name, dir),
        unpublish: (name) => adapters.unpublishFineTuned(name),
      },
      {
        maxJobs: config.maxTrainingJobs,
        threads: config.trainingThreads,
        files: { bytes: config.trainingFileBytes, lines: config.trainingFileLines },
      },
    );
    return new Serving(engine, adapters, config, metrics, keys, finetune);
  }

  /** Sampling defaults for fields a request leaves unset (empty with --generation-config none). */
  get samplingDefaults(): GenerationDefaults['sampling'] {
    return this.config.generationConfig === 'auto' ? this.engine.model.generation.sampling : {};
  }

  get baseId(): string {
    return this.engine.model.id;
  }

  /**
   * The adapters a request applies: its `model` (the base id, an adapter, or a saved mix), or with
   * `adapters` (LoRAX's field) exactly that weighted list, `model` then only labelling the answer.
   * Anything this caller may not see is "not found".
   */
  async resolve(caller: Caller, model: string, adapters?: readonly MixMember[] | null): Promise<ResolvedModel> {
    const named = await this.resolveName(caller, model);
    if (adapters === undefined || adapters === null) return named;
    return { id: model, mix: await this.adapters.resolveMix(caller, adapters) };
  }

  private async resolveName(caller: Caller, model: string): Promise<ResolvedModel> {
    if (model === this.baseId) return { id: model, mix: [] };
    const fineTuned = this.finetune.jobs.adapterFor(caller.tenant, model);
    const tuned = fineTuned === undefined ? undefined : await this.adapters.fineTuned(fineTuned);
    if (tuned) return { id: model, mix: [{ adapter: tuned, weight: 1 }] };
    const adapter = await this.adapters.find(caller, model);
    if (adapter) return { id: model, mix: [{ adapter, weight: 1 }] };
    const saved = this.adapters.findMix(caller, model);
    if (saved) {
      // Members are looked up when used: one deleted since the mix was saved is "not found".
      const mix = await Promise.all(
        saved.members.map(async ({ name, weight }) => {
          const member = await this.adapters.find(caller, name);
          if (!member)
            throw new ModelNotFoundError(`adapter mix "${model}" names adapter "${name}", which no longer exists`, { param: 'model' });
          return { adapter: member, weight };
        }),
      );
      return { id: model, mix };
    }
    const names = [
      this.baseId,
      ...this.finetune.jobs.models(caller.tenant).map((m) => m.id),
      ...(await this.adapters.visible(caller)).map((a) => a.name),
      ...this.adapters.visibleMixes(caller).map((m) => m.name),
    ];
    throw new ModelNotFoundError(`model "${model}" does not exist; available: ${names.join(', ')}`, { param: 'model' });
  }

  /** Admits a request: checks shutdown and the queue bound, pins its adapters, queues it. */
  async start(
    model: ResolvedModel,
    req: Omit<GenerateRequest, 'slot' | 'adapters' | 'onDone' | 'signal'>,
    signal: AbortSignal,
  ): Promise<Generation> {
    return (await this.startChoices(model, req, 1, signal))[0]!;
  }

  /** `start` for n choices of one prompt (read once); the adapters stay pinned until the last choice ends. */
  async startChoices(
    model: ResolvedModel,
    req: Omit<GenerateRequest, 'slot' | 'adapters' | 'onDone' | 'signal'>,
    n: number,
    signal: AbortSignal,
  ): Promise<Generation[]> {
    if (this.shuttingDown)
      throw new ShuttingDownError('the server is shutting down; retry on another replica', { headers: { 'retry-after': '5' } });
    if (this.queueDepth() >= this.config.maxQueue) {
      throw new QueueFullError(`${this.queueDepth()} requests are already waiting; retry shortly`, { headers: { 'retry-after': '1' } });
    }
    const leases = model.mix.length ? await this.adapters.acquireAll(model.mix, signal) : [];
    const release = () => leases.forEach((l) => l.release());
    try {
      const adapters = leases.map((l, i) => ({ slot: l.slot, weight: model.mix[i]!.weight }));
      // Cached prefixes are keyed by the exact versions the slots hold and their weights; the base model is its own identity.
      const prefixKey = leases.length ? JSON.stringify(leases.map((l, i) => [l.identity, model.mix[i]!.weight])) : BASE_PREFIX_KEY;
      let running = n;
      return this.engine.generateChoices({ ...req, adapters, prefixKey, signal, onDone: () => --running === 0 && release() }, n);
    } catch (err) {
      release();
      throw err;
    }
  }

  /**
   * Admits a completion for the caller's tenant under its limits (429 past one); `running` for
   * max_queued is its generations holding a batch row.
   */
  admit(caller: Caller, cost: { promptTokens: number; sequences: number }): Admission {
    const running = this.engine.scheduler.tenants().find((t) => t.tenant === caller.tenant)?.running ?? 0;
    return this.limiter.admit(caller.tenant, cost, running);
  }

  /** Every tenant's usage since start: requests and 429s here, tokens and fair-share state from the engine. */
  tenantUsage(): TenantUsage[] {
    const counts = this.limiter.counts();
    const service = new Map(this.engine.scheduler.tenants().map((t) => [t.tenant, t]));
    return [...new Set([...counts.keys(), ...service.keys()])].sort().map((tenant) => {
      const c = counts.get(tenant);
      const s = service.get(tenant);
      return {
        tenant,
        requests: c?.requests ?? 0,
        rateLimited: c?.rateLimited ?? 0,
        promptTokens: (s?.promptTokens ?? 0) + (s?.cachedTokens ?? 0),
        cachedTokens: s?.cachedTokens ?? 0,
        completionTokens: s?.completionTokens ?? 0,
        preemptions: s?.preemptions ?? 0,
        weight: s?.weight ?? 1,
        counter: s?.counter ?? 0,
        running: s?.running ?? 0,
        waiting: s?.waiting ?? 0,
      };
    });
  }

  queueDepth(): number {
    return this.adapters.occupancy().queued + this.engine.scheduler.stats.waiting;
  }

  running(): number {
    return this.engine.scheduler.stats.running;
  }

  kvUsage(): number {
    const capacity = this.engine.options.maxBatch * this.engine.options.maxContext;
    return Math.min(1, this.engine.scheduler.stats.kvPositions / capacity);
  }

  occupancy(): CacheOccupancy {
    return this.adapters.occupancy();
  }

  prefixCache(): { queries: number; hits: number; evictions: number; bytes: number } | null {
    const cache = this.engine.scheduler.prefixes;
    return cache && { ...cache.counters, bytes: cache.bytes };
  }

  async close(): Promise<void> {
    await this.finetune.close();
    await this.engine.close();
  }
}
