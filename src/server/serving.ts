/**
 * What the routes share: the engine, the adapter store and cache, configuration, metrics and
 * keys. It resolves a request's `model` for a caller, admits it (queue bound, shutdown), pins
 * its adapter and hands it to the engine.
 */
import { Engine, type GenerateRequest, type Generation } from '../engine/index.js';
import { AdapterNotFoundError, ModelNotFoundError, QueueFullError, ShuttingDownError } from '../errors.js';
import { AdapterCache, AdapterStore, parsePeftConfig, resolveTargets, type StoredAdapter } from '../lora/index.js';
import type { Caller, KeyRing } from './auth.js';
import type { ServerConfig } from './config.js';
import { InFlight } from './in-flight.js';
import { Metrics } from './metrics.js';

export interface ResolvedModel {
  /** The name clients used: an adapter name or the base id. */
  id: string;
  adapter: StoredAdapter | null;
}

export interface AdapterDetails {
  r: number | null;
  loraAlpha: number | null;
  maxRank: number | null;
  targetModules: string[];
  useRslora: boolean | null;
  bias: string | null;
  baseModelNameOrPath: string | null;
}

export class Serving {
  shuttingDown = false;
  readonly inFlight = new InFlight();
  private readonly details = new Map<string, AdapterDetails>();

  constructor(
    readonly engine: Engine,
    readonly store: AdapterStore,
    readonly cache: AdapterCache,
    readonly config: ServerConfig,
    readonly metrics: Metrics,
    readonly keys: KeyRing | null,
  ) {
    metrics.slotsTotal.set(cache.capacity);
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
    });
    const store = await AdapterStore.open(config.adaptersDir);
    const metrics = new Metrics();
    const cache = new AdapterCache(store, engine.slots, config.hostCacheBytes, (c, w) => engine.parseAdapter(c, w), {
      hit: (tier) => metrics.cacheHits.inc({ tier }),
      miss: (tier) => metrics.cacheMisses.inc({ tier }),
      evict: (tier) => metrics.cacheEvictions.inc({ tier }),
      failed: (adapter, code) => metrics.loadFailures.inc({ adapter, code }),
    });
    return new Serving(engine, store, cache, config, metrics, keys);
  }

  get baseId(): string {
    return this.engine.model.id;
  }

  /** Every adapter in the (possibly shared) store this caller may use, re-read from disk. */
  async visibleAdapters(caller: Caller): Promise<StoredAdapter[]> {
    const before = new Map(this.store.list().map((a) => [a.name, a]));
    const now = await this.store.rescan();
    for (const [name, a] of before) if (this.store.get(name) !== a) this.cache.forget(name);
    return now.filter((a) => caller.canUse(a.name));
  }

  /**
   * `name`'s current version in the store, which other replicas may have written, replaced or
   * deleted: checked on every admission, and cached versions that are no longer current dropped.
   */
  async current(name: string): Promise<StoredAdapter | undefined> {
    const before = this.store.get(name);
    const now = await this.store.refresh(name);
    if (now !== before) this.cache.forget(name);
    return now;
  }

  /** The adapter (or base model) a request names; anything this caller may not see is "not found". */
  async resolve(caller: Caller, model: string): Promise<ResolvedModel> {
    if (model === this.baseId) return { id: model, adapter: null };
    const adapter = caller.canUse(model) ? await this.current(model) : undefined;
    if (adapter) return { id: model, adapter };
    const names = [this.baseId, ...(await this.visibleAdapters(caller)).map((a) => a.name)];
    throw new ModelNotFoundError(`model "${model}" does not exist; available: ${names.join(', ')}`, { param: 'model' });
  }

  async requireAdapter(caller: Caller, name: string): Promise<StoredAdapter> {
    const adapter = caller.canUse(name) ? await this.current(name) : undefined;
    if (!adapter) throw new AdapterNotFoundError(`adapter "${name}" does not exist`, { param: 'name' });
    return adapter;
  }

  /** Config-level facts about an adapter (rank, targets), read once per version from its config. */
  async describe(adapter: StoredAdapter): Promise<AdapterDetails> {
    const key = `${adapter.name}@${adapter.version}`;
    const known = this.details.get(key);
    if (known) return known;
    let details: AdapterDetails;
    try {
      const { config } = await this.store.read(adapter);
      const peft = parsePeftConfig(config);
      const targets = resolveTargets(peft, this.engine.model.linears, String(this.engine.model.config.model_type ?? ''));
      details = {
        r: peft.r, loraAlpha: peft.loraAlpha, useRslora: peft.useRslora, bias: peft.bias, baseModelNameOrPath: peft.baseModelNameOrPath,
        maxRank: targets.length ? Math.max(...targets.map((t) => t.rank)) : null,
        targetModules: [...new Set(targets.map((t) => t.module.name.split('.').pop()!))],
      };
    } catch {
      details = { r: null, loraAlpha: null, maxRank: null, targetModules: [], useRslora: null, bias: null, baseModelNameOrPath: null };
    }
    this.details.set(key, details);
    return details;
  }

  /** Admits a request: checks shutdown and the queue bound, pins its adapter, queues it. */
  async start(model: ResolvedModel, req: Omit<GenerateRequest, 'slot' | 'onDone'>, signal: AbortSignal): Promise<Generation> {
    if (this.shuttingDown) throw new ShuttingDownError('the server is shutting down; retry on another replica', { headers: { 'retry-after': '5' } });
    if (this.queueDepth >= this.config.maxQueue) {
      throw new QueueFullError(`${this.queueDepth} requests are already waiting; retry shortly`, { headers: { 'retry-after': '1' } });
    }
    const lease = model.adapter ? await this.cache.acquire(model.adapter.name, signal) : null;
    try {
      return this.engine.generate({ ...req, slot: lease?.slot ?? 0, signal, onDone: () => lease?.release() });
    } catch (err) {
      lease?.release();
      throw err;
    } finally {
      this.refreshGauges();
    }
  }

  get queueDepth(): number {
    return this.cache.waiting + this.engine.scheduler.stats.waiting;
  }

  refreshGauges(): void {
    const m = this.metrics;
    const stats = this.engine.scheduler.stats;
    const occ = this.cache.occupancy();
    m.queueDepth.set(this.queueDepth);
    m.running.set(stats.running);
    m.slotsUsed.set(occ.used);
    m.slotsPinned.set(occ.pinned);
    m.hostCacheBytes.set(this.cache.hostBytes);
    m.vllmWaiting.set(this.queueDepth);
    m.vllmRunning.set(stats.running);
    const capacity = this.engine.options.maxBatch * this.engine.options.maxContext;
    m.vllmKvUsage.set(Math.min(1, stats.kvPositions / capacity));
    m.vllmLoraInfo.reset();
    m.vllmLoraInfo.set(
      { max_lora: String(this.cache.capacity), running_lora_adapters: occ.running.join(','), waiting_lora_adapters: occ.waiting.join(',') },
      Date.now() / 1000,
    );
  }

  async close(): Promise<void> {
    await this.engine.close();
  }
}
