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
import {
  AdapterNameTakenError,
  AdaptersDisabledError,
  AdapterNotFoundError,
  ForbiddenError,
  InvalidAdapterMixError,
  InvalidAdapterNameError,
} from '../errors.js';
import type { Engine } from '../engine/index.js';
import { FINE_TUNED_PREFIX } from '../finetune/index.js';
import {
  AdapterCache,
  AdapterStore,
  MixStore,
  checkAdapterName,
  readAdapterFolder,
  summarizeAdapterConfig,
  versionKey,
  type AdapterFiles,
  type AdapterSummary,
  type CacheEvents,
  type CacheOccupancy,
  type Lease,
  type MixMember,
  type SavedMix,
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

/** The adapters one request applies, each with its weight: [] is the base model. */
export type ResolvedMix = Array<{ adapter: StoredAdapter; weight: number }>;

const NO_SLOTS: CacheOccupancy = { capacity: 0, used: 0, pinned: 0, hostBytes: 0, queued: 0, running: [], waiting: [] };

export class AdapterService {
  private readonly summaries = new Map<string, AdapterSummary | null>();
  /** Requests needing several slots take them one request at a time (see `acquireAll`). */
  private mixGate: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly engine: Engine,
    private readonly store: AdapterStore,
    private readonly mixes: MixStore,
    /** null when the engine has no adapter slots. */
    private readonly cache: AdapterCache | null,
    private readonly config: Pick<ServerConfig, 'loraRoot' | 'maxMixAdapters'>,
  ) {}

  static async open(
    engine: Engine,
    config: Pick<ServerConfig, 'adaptersDir' | 'hostCacheBytes' | 'loraRoot' | 'maxMixAdapters'>,
    events: CacheEvents,
  ): Promise<AdapterService> {
    const store = await AdapterStore.open(config.adaptersDir);
    const mixes = await MixStore.open(store.root);
    const parse = (c: string, w: Uint8Array) => engine.parseAdapter(c, w);
    const cache = engine.slots ? new AdapterCache(store, engine.slots, config.hostCacheBytes, parse, events) : null;
    return new AdapterService(engine, store, mixes, cache, config);
  }

  /**
   * The adapters this caller may use, by name, re-read from the (possibly shared) store folder:
   * versions another replica replaced or deleted are dropped from the cache. Fine-tuned models are
   * listed by their `ft:` names (Serving), not their store names.
   */
  async visible(caller: Caller): Promise<StoredAdapter[]> {
    const before = new Map(this.store.list().map((a) => [a.name, a]));
    const now = await this.store.rescan();
    for (const [name, a] of before) if (this.store.get(name) !== a) this.cache?.forget(name);
    return now.filter((a) => caller.canUse(a.name) && !a.name.startsWith(FINE_TUNED_PREFIX));
  }

  /** The adapter named, if it exists and this caller may use it; checked against the store on every call. */
  async find(caller: Caller, name: string): Promise<StoredAdapter | undefined> {
    return mayUse(caller, name) ? this.current(name) : undefined;
  }

  /** A fine-tuned model's adapter by its store name (its `ft:` name was checked against the caller's tenant). */
  fineTuned(name: string): Promise<StoredAdapter | undefined> {
    return this.current(name);
  }

  /** Stores a fine-tuning job's adapter folder once it validates against the engine (atomically, as an upload). */
  async publishFineTuned(name: string, dir: string): Promise<void> {
    const files = readAdapterFolder(dir);
    this.validate(files);
    await this.store.put(name, files);
    this.cache?.forget(name);
  }

  async unpublishFineTuned(name: string): Promise<void> {
    await this.store.delete(name);
    this.cache?.forget(name);
  }

  async list(caller: Caller): Promise<AdapterView[]> {
    return Promise.all((await this.visible(caller)).map((a) => this.view(a)));
  }

  async describe(caller: Caller, name: string): Promise<AdapterView> {
    return this.view(await this.require(caller, name));
  }

  /** Validates the files in full against the engine, then stores them (replacing any previous version). */
  async upload(caller: Caller, name: unknown, files: AdapterFiles): Promise<{ adapter: AdapterView; replaced: boolean }> {
    const checked = checkUserName(name, 'name');
    if (!caller.canUse(checked)) throw new ForbiddenError(`this API key may not manage an adapter named "${checked}"`, { param: 'name' });
    if (this.mixes.get(checked))
      throw new AdapterNameTakenError(`"${checked}" is a saved adapter mix; delete it first or choose another name`, { param: 'name' });
    this.validate(files);
    const replaced = (await this.current(checked)) !== undefined;
    const stored = await this.store.put(checked, files);
    this.cache?.forget(checked);
    return { adapter: await this.view(stored), replaced };
  }

  /**
   * vLLM's load_lora_adapter: registers a folder under --lora-root in place, once it validates
   * (a name already in use needs `inplace`, as vLLM's load_inplace; the old version serves until
   * the new one has validated). Admins only.
   */
  async register(caller: Caller, name: string, path: string, inplace: boolean): Promise<void> {
    adminOnly(caller);
    checkUserName(name, 'lora_name');
    if (this.mixes.get(name))
      throw new AdapterNameTakenError(`"${name}" is a saved adapter mix; delete it first or choose another name`, { param: 'lora_name' });
    if (!inplace && (await this.current(name)) !== undefined)
      throw new AdapterNameTakenError(`adapter "${name}" is already loaded; set load_inplace: true to replace it`, { param: 'lora_name' });
    const { dir } = await this.store.resolvePath(path, this.config.loraRoot);
    this.validate(readAdapterFolder(dir));
    await this.store.registerPath(name, path, this.config.loraRoot);
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

  /**
   * Checks a weighted mix for a caller: at most --max-mix-adapters (and no more than the device
   * slots), distinct names the caller may use, finite weights, no DoRA adapter (its rescaling is
   * defined for one adapter alone, so a mix of it has no PEFT meaning).
   */
  async resolveMix(caller: Caller, members: readonly MixMember[]): Promise<ResolvedMix> {
    const cache = this.slots();
    const limit = Math.min(this.config.maxMixAdapters, cache.occupancy().capacity);
    const fail = (why: string): never => {
      throw new InvalidAdapterMixError(`adapters: ${why}`, { param: 'adapters' });
    };
    if (members.length === 0) fail('name at least one adapter');
    if (members.length > limit) fail(`${members.length} adapters; this server mixes at most ${limit}`);
    const seen = new Set<string>();
    const mix: ResolvedMix = [];
    for (const { name, weight } of members) {
      if (seen.has(name)) fail(`"${name}" is named twice`);
      seen.add(name);
      if (!Number.isFinite(weight)) fail(`the weight of "${name}" is not a finite number`);
      if (this.mixes.get(name) && caller.canUse(name)) fail(`"${name}" is itself a saved mix; list its adapters instead`);
      const adapter = await this.find(caller, name);
      if (!adapter) throw new AdapterNotFoundError(`adapters: adapter "${name}" does not exist`, { param: 'adapters' });
      if ((await this.summary(adapter))?.useDora)
        fail(`"${name}" is a DoRA adapter, whose rescaling is defined for that adapter alone; serve it as model "${name}"`);
      mix.push({ adapter, weight });
    }
    return mix;
  }

  /** The saved mix of that name, if it exists and this caller may use it. */
  findMix(caller: Caller, name: string): SavedMix | undefined {
    const mix = this.mixes.get(name);
    return mix && caller.canUse(name) ? mix : undefined;
  }

  visibleMixes(caller: Caller): SavedMix[] {
    return this.mixes.list().filter((m) => caller.canUse(m.name));
  }

  /** Saves (or replaces) a named mix once its members resolve for this caller; no weights are written. */
  async saveMix(caller: Caller, name: string, members: MixMember[]): Promise<{ mix: SavedMix; replaced: boolean }> {
    const checked = checkUserName(name, 'name');
    if (!caller.canUse(checked)) throw new ForbiddenError(`this API key may not manage an adapter named "${checked}"`, { param: 'name' });
    if (await this.current(checked))
      throw new AdapterNameTakenError(`"${checked}" is an adapter; a mix needs a name of its own`, { param: 'name' });
    await this.resolveMix(caller, members);
    const replaced = this.mixes.get(checked) !== undefined;
    return {
      mix: await this.mixes.put(
        checked,
        members.map(({ name: n, weight }) => ({ name: n, weight })),
      ),
      replaced,
    };
  }

  requireMix(caller: Caller, name: string): SavedMix {
    const mix = this.findMix(caller, name);
    if (!mix) throw new AdapterNotFoundError(`adapter mix "${name}" does not exist`, { param: 'name' });
    return mix;
  }

  async deleteMix(caller: Caller, name: string): Promise<void> {
    await this.mixes.delete(this.requireMix(caller, name).name);
  }

  /**
   * Pins every adapter of a request into a device slot; the leases come back in the mix's order.
   * Requests that need more than one slot take theirs one request at a time: two such requests
   * each holding part of what they need could otherwise wait on each other forever. Single-adapter
   * requests never wait on this gate, and what a mix holds is released if it is cancelled.
   */
  async acquireAll(mix: ResolvedMix, signal?: AbortSignal): Promise<Lease[]> {
    const cache = this.slots();
    if (mix.length === 1) return [await cache.acquire(mix[0]!.adapter.name, signal)];
    const take = async () => {
      const leases: Lease[] = [];
      try {
        for (const { adapter } of mix) leases.push(await cache.acquire(adapter.name, signal));
        return leases;
      } catch (err) {
        for (const l of leases) l.release();
        throw err;
      }
    };
    const run = this.mixGate.then(take, take);
    this.mixGate = run.catch(() => {});
    return run;
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

/**
 * Fine-tuned models are stored under their job's id and served to their tenant by their `ft:`
 * name; under the store name only admins see them (a tenant key scoped to `*` must not reach
 * another tenant's model), and no upload may take such a name.
 */
const mayUse = (caller: Caller, name: string) => caller.canUse(name) && (caller.admin || !name.startsWith(FINE_TUNED_PREFIX));

function checkUserName(name: unknown, param: string): string {
  const checked = checkAdapterName(name);
  if (checked.startsWith(FINE_TUNED_PREFIX))
    throw new InvalidAdapterNameError(`adapter names starting with "${FINE_TUNED_PREFIX}" are kept for fine-tuned models`, { param });
  return checked;
}

function adminOnly(caller: Caller): void {
  if (!caller.admin) throw new ForbiddenError('this endpoint needs an admin API key');
}
