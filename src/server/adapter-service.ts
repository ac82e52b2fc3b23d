/**
 * Adapter management, one call per operation: the store (disk), the cache (host memory and device
 * slots) and validation against the engine stay private behind it. It lives in the server layer
 * because its operations are defined by a caller's scope (a tenant never learns that adapters
 * outside its scope exist: they are "not found") and by the engine it validates against; lora/
 * holds the parts it composes.
 *
 * Without adapter slots (`--slots 0`) no cache is built: the base model is served alone, and
 * anything that needs a slot fails at once with `adapters_disabled` instead of waiting for one.
 */
import { AdaptersDisabledError, AdapterNotFoundError, ForbiddenError } from '../errors.js';
import type { Engine } from '../engine/index.js';
import {
  AdapterCache,
  AdapterStore,
  checkAdapterName,
  summarizeAdapterConfig,
  versionKey,
  type AdapterFiles,
  type AdapterSummary,
  type CacheEvents,
  type CacheOccupancy,
  type Lease,
  type StoredAdapter,
  type StoreStartup,
  type Tier,
} from '../lora/index.js';
import type { Caller } from './auth.js';
import type { ServerConfig } from './config.js';

/** An adapter as the API describes it. */
export interface AdapterView {
  stored: StoredAdapter;
  /** Read from its config once per version; null when the config cannot be read. */
  summary: AdapterSummary | null;
  tier: Tier;
  /** Device slot when tier is device. */
  slot: number | null;
}

const NO_SLOTS: CacheOccupancy = { capacity: 0, used: 0, pinned: 0, hostBytes: 0, queued: 0, running: [], waiting: [] };

export class AdapterService {
  private readonly summaries = new Map<string, AdapterSummary | null>();

  private constructor(
    private readonly engine: Engine,
    private readonly store: AdapterStore,
    /** null when the engine has no adapter slots. */
    private readonly cache: AdapterCache | null,
    private readonly config: Pick<ServerConfig, 'loraRoot'>,
  ) {}

  static async open(
    engine: Engine,
    config: Pick<ServerConfig, 'adaptersDir' | 'hostCacheBytes' | 'loraRoot'>,
    events: CacheEvents,
  ): Promise<AdapterService> {
    const store = await AdapterStore.open(config.adaptersDir);
    const parse = (c: string, w: Uint8Array) => engine.parseAdapter(c, w);
    const cache = engine.slots ? new AdapterCache(store, engine.slots, config.hostCacheBytes, parse, events) : null;
    return new AdapterService(engine, store, cache, config);
  }

  /**
   * The adapters this caller may use, by name, re-read from the (possibly shared) store folder:
   * versions another replica replaced or deleted are dropped from the cache.
   */
  async visible(caller: Caller): Promise<StoredAdapter[]> {
    const before = new Map(this.store.list().map((a) => [a.name, a]));
    const now = await this.store.rescan();
    for (const [name, a] of before) if (this.store.get(name) !== a) this.cache?.forget(name);
    return now.filter((a) => caller.canUse(a.name));
  }

  /** The adapter named, if it exists and this caller may use it; checked against the store on every call. */
  async find(caller: Caller, name: string): Promise<StoredAdapter | undefined> {
    return caller.canUse(name) ? this.current(name) : undefined;
  }

  async list(caller: Caller): Promise<AdapterView[]> {
    return Promise.all((await this.visible(caller)).map((a) => this.view(a)));
  }

  async describe(caller: Caller, name: string): Promise<AdapterView> {
    return this.view(await this.require(caller, name));
  }

  /** Validates the files in full against the engine, then stores them (replacing any previous version). */
  async upload(caller: Caller, name: unknown, files: AdapterFiles): Promise<{ adapter: AdapterView; replaced: boolean }> {
    const checked = checkAdapterName(name);
    if (!caller.canUse(checked)) throw new ForbiddenError(`this API key may not manage an adapter named "${checked}"`, { param: 'name' });
    this.validate(files);
    const replaced = (await this.current(checked)) !== undefined;
    const stored = await this.store.put(checked, files);
    this.cache?.forget(checked);
    return { adapter: await this.view(stored), replaced };
  }

  /** vLLM's load_lora_adapter: registers a folder under --lora-root in place, once it validates. Admins only. */
  async register(caller: Caller, name: string, path: string): Promise<void> {
    adminOnly(caller);
    checkAdapterName(name);
    const stored = await this.store.registerPath(name, path, this.config.loraRoot);
    try {
      this.validate(await this.store.read(stored));
    } catch (err) {
      await this.store.delete(name);
      throw err;
    }
    this.cache?.forget(name);
  }

  /** Deletes an adapter (its folder too, unless registered by path); running requests finish first. */
  async remove(caller: Caller, name: string): Promise<void> {
    const adapter = await this.require(caller, name);
    await this.store.delete(adapter.name);
    this.cache?.forget(adapter.name);
  }

  /** vLLM's unload_lora_adapter: `remove`, for admins only. */
  unregister(caller: Caller, name: string): Promise<void> {
    adminOnly(caller);
    return this.remove(caller, name);
  }

  /** Loads an adapter into a device slot without pinning it. */
  async warm(caller: Caller, name: string): Promise<AdapterView> {
    const cache = this.slots();
    const adapter = await this.require(caller, name);
    await cache.warm(adapter.name);
    return this.view(adapter);
  }

  /** Drops an adapter from the device and host tiers; it stays on disk. */
  async unload(caller: Caller, name: string): Promise<AdapterView> {
    const adapter = await this.require(caller, name);
    this.cache?.unload(adapter.name);
    return this.view(adapter);
  }

  /** Pins the adapter's current version into a device slot for one request. */
  acquire(adapter: StoredAdapter, signal?: AbortSignal): Promise<Lease> {
    return this.slots().acquire(adapter.name, signal);
  }

  occupancy(): CacheOccupancy {
    return this.cache?.occupancy() ?? NO_SLOTS;
  }

  /** What the store repaired or skipped when it opened (for the startup log). */
  storeStartup(): StoreStartup {
    return this.store.startup;
  }

  private slots(): AdapterCache {
    if (!this.cache)
      throw new AdaptersDisabledError(
        `this server runs without adapter slots (--slots 0): only the base model "${this.engine.model.id}" is served`,
      );
    return this.cache;
  }

  private validate(files: AdapterFiles): void {
    this.slots();
    this.engine.parseAdapter(files.config, files.weights);
  }

  /**
   * `name`'s current version in the store, which other replicas may have written, replaced or
   * deleted (one small read); cached versions that are no longer current are dropped.
   */
  private async current(name: string): Promise<StoredAdapter | undefined> {
    const before = this.store.get(name);
    const now = await this.store.refresh(name);
    if (now !== before) this.cache?.forget(name);
    return now;
  }

  private async require(caller: Caller, name: string): Promise<StoredAdapter> {
    const adapter = await this.find(caller, name);
    if (!adapter) throw new AdapterNotFoundError(`adapter "${name}" does not exist`, { param: 'name' });
    return adapter;
  }

  private async view(stored: StoredAdapter): Promise<AdapterView> {
    const { tier, slot } = this.cache?.tierOf(stored.name) ?? { tier: 'disk' as const, slot: null };
    return { stored, summary: await this.summary(stored), tier, slot };
  }

  private async summary(stored: StoredAdapter): Promise<AdapterSummary | null> {
    const key = versionKey(stored);
    if (!this.summaries.has(key)) {
      let summary: AdapterSummary | null = null;
      try {
        summary = summarizeAdapterConfig((await this.store.read(stored)).config, this.engine.model);
      } catch {
        // An adapter whose config no longer reads is still listed, with its facts unknown.
      }
      this.summaries.set(key, summary);
    }
    return this.summaries.get(key)!;
  }
}

function adminOnly(caller: Caller): void {
  if (!caller.admin) throw new ForbiddenError('this endpoint needs an admin API key');
}
