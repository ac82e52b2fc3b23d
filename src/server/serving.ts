/**
 * What the routes share: the engine, the adapter service, configuration, metrics and keys. It
 * resolves a request's `model` for a caller, admits it (queue bound, shutdown), pins its adapter
 * and hands it to the engine.
 */
import { Engine, type GenerateRequest, type Generation } from '../engine/index.js';
import { ModelNotFoundError, QueueFullError, ShuttingDownError } from '../errors.js';
import type { CacheOccupancy, StoredAdapter } from '../lora/index.js';
import { AdapterService } from './adapter-service.js';
import type { Caller, KeyRing } from './auth.js';
import type { ServerConfig } from './config.js';
import { InFlight } from './in-flight.js';
import { Metrics, type GaugeSource } from './metrics.js';

export interface ResolvedModel {
  /** The name clients used: an adapter name or the base id. */
  id: string;
  adapter: StoredAdapter | null;
}

export class Serving implements GaugeSource {
  shuttingDown = false;
  readonly inFlight = new InFlight();

  constructor(
    readonly engine: Engine,
    readonly adapters: AdapterService,
    readonly config: ServerConfig,
    readonly metrics: Metrics,
    readonly keys: KeyRing | null,
  ) {
    metrics.gaugesFrom(this);
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
    });
    const metrics = new Metrics();
    const adapters = await AdapterService.open(engine, config, metrics.cacheEvents);
    return new Serving(engine, adapters, config, metrics, keys);
  }

  get baseId(): string {
    return this.engine.model.id;
  }

  /** The adapter (or base model) a request names; anything this caller may not see is "not found". */
  async resolve(caller: Caller, model: string): Promise<ResolvedModel> {
    if (model === this.baseId) return { id: model, adapter: null };
    const adapter = await this.adapters.find(caller, model);
    if (adapter) return { id: model, adapter };
    const names = [this.baseId, ...(await this.adapters.visible(caller)).map((a) => a.name)];
    throw new ModelNotFoundError(`model "${model}" does not exist; available: ${names.join(', ')}`, { param: 'model' });
  }

  /** Admits a request: checks shutdown and the queue bound, pins its adapter, queues it. */
  async start(model: ResolvedModel, req: Omit<GenerateRequest, 'slot' | 'onDone' | 'signal'>, signal: AbortSignal): Promise<Generation> {
    if (this.shuttingDown)
      throw new ShuttingDownError('the server is shutting down; retry on another replica', { headers: { 'retry-after': '5' } });
    if (this.queueDepth() >= this.config.maxQueue) {
      throw new QueueFullError(`${this.queueDepth()} requests are already waiting; retry shortly`, { headers: { 'retry-after': '1' } });
    }
    const lease = model.adapter ? await this.adapters.acquire(model.adapter, signal) : null;
    try {
      return this.engine.generate({ ...req, slot: lease?.slot ?? 0, signal, onDone: () => lease?.release() });
    } catch (err) {
      lease?.release();
      throw err;
    }
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

  async close(): Promise<void> {
    await this.engine.close();
  }
}
