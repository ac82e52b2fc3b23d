/**
 * The adapter cache: disk (the store) → host memory → device slots, in the manner of vLLM's
 * LRUCacheLoRAModelManager.
 *
 * - Host tier: parsed, slot-ready tensors in an LRU bounded in bytes.
 * - Device tier: the engine's slots, LRU among unpinned ones. A request pins its adapter's slot
 *   from admission to its last token; a pinned slot is never evicted. When every slot is pinned,
 *   requests for other adapters wait (bounded by the server's queue limit).
 * - Evict before load; touch on hit; one load per adapter version however many ask at once; a
 *   failed load rejects everyone waiting on it and leaves nothing cached. A load that fails
 *   because the adapter was replaced or deleted meanwhile is retried on the current version (or
 *   answers "not found"); one that fails on a sealed adapter's files is corruption at rest.
 * - Entries are keyed by adapter version, so a replaced adapter's running requests finish on the
 *   old weights while new requests load the new ones.
 * - The base model is slot 0, a pseudo-adapter that is always resident. An engine without adapter
 *   slots gets no cache at all (the server refuses adapter requests instead of waiting forever).
 */
import { LRUCache } from 'lru-cache';
import { AdapterCorruptedError, AdapterInUseError, AdapterLoadFailedError, LoraServeError, RequestCancelledError } from '../errors.js';
import type { ParsedAdapter } from './adapter.js';
import { versionKey, type AdapterStore, type StoredAdapter } from './adapter-store.js';
import type { SlotTable } from './slot-table.js';

/** The parts of the store and of the slot table the cache uses (unit tests pass fakes). */
export type CacheSource = Pick<AdapterStore, 'get' | 'require' | 'read'>;
export type CacheSlots = Pick<SlotTable, 'slots' | 'write' | 'clear'>;

export type Tier = 'disk' | 'host' | 'device';

export interface CacheEvents {
  hit(tier: 'host' | 'device'): void;
  miss(tier: 'host' | 'device'): void;
  evict(tier: 'host' | 'device'): void;
  /** A load from disk failed for a reason other than a concurrent replace or delete. */
  failed(name: string, code: string): void;
}

interface Slot {
  /** `${name}@${version}` of the adapter in it, or null when free. */
  key: string | null;
  name: string | null;
  /**
   * The adapter version in it as `${name}@${version}#${stamp}`: this store's version (bumped on every
   * replacement, adapters registered by path included) and the stamp the shared store wrote.
   */
  identity: string | null;
  pins: number;
  lastUsed: number;
  /** Set while an adapter is being written into it. */
  loading: boolean;
}

export interface CacheOccupancy {
  /** Adapter slots on the device (slot 0, the base model, not counted). */
  capacity: number;
  used: number;
  pinned: number;
  /** Bytes of parsed adapters held in host memory. */
  hostBytes: number;
  /** Requests waiting for a slot. */
  queued: number;
  /** Names in device slots and names waited for (the gateway metrics). */
  running: string[];
  waiting: string[];
}

export interface Lease {
  slot: number;
  name: string;
  /** The adapter version in the slot (what cached prefixes are keyed by): a replacement never has an old one's identity. */
  identity: string;
  release(): void;
}

const cancelled = () => new RequestCancelledError('the request was cancelled while waiting for an adapter slot');

/** A host-tier entry; its key is the version key, the name lets `forget` find every version. */
interface HostEntry {
  name: string;
  adapter: ParsedAdapter;
}

export class AdapterCache {
  private readonly host: LRUCache<string, HostEntry>;
  private readonly slots: Slot[];
  private readonly loads = new Map<string, Promise<number>>();
  private waiters: Array<{ name: string; wake: () => void }> = [];
  private clock = 0;

  constructor(
    private readonly store: CacheSource,
    private readonly table: CacheSlots,
    hostBytes: number,
    private readonly parse: (config: string, weights: Uint8Array) => ParsedAdapter,
    private readonly events: CacheEvents,
  ) {
    this.host = new LRUCache<string, HostEntry>({
      maxSize: Math.max(1, hostBytes),
      sizeCalculation: (e) => Math.max(1, e.adapter.bytes),
      dispose: (_v, _k, reason) => {
        if (reason === 'evict') this.events.evict('host');
      },
    });
    this.slots = Array.from({ length: table.slots }, () => ({
      key: null,
      name: null,
      identity: null,
      pins: 0,
      lastUsed: 0,
      loading: false,
    }));
  }

  occupancy(): CacheOccupancy {
    const inSlots = this.slots.slice(1).filter((s) => s.name);
    return {
      capacity: this.slots.length - 1,
      used: inSlots.length,
      pinned: inSlots.filter((s) => s.pins > 0).length,
      hostBytes: this.host.calculatedSize,
      queued: this.waiters.length,
      running: [...new Set(inSlots.map((s) => s.name!))],
      waiting: [...new Set(this.waiters.map((w) => w.name))],
    };
  }

  /** Where an adapter's current version sits now, and in which slot if on the device. */
  tierOf(name: string): { tier: Tier; slot: number | null } {
    const entry = this.store.get(name);
    if (!entry) return { tier: 'disk', slot: null };
    const key = versionKey(entry);
    const slot = this.slots.findIndex((s, i) => i > 0 && s.key === key && !s.loading);
    if (slot > 0) return { tier: 'device', slot };
    return { tier: this.host.has(key) ? 'host' : 'disk', slot: null };
  }

  /**
   * Pins `name`'s current version into a device slot, loading it if needed, and returns a lease
   * whose release unpins it. Waits while every slot is pinned by other adapters.
   */
  async acquire(name: string, signal?: AbortSignal): Promise<Lease> {
    for (;;) {
      if (signal?.aborted) throw cancelled();
      const entry = this.store.require(name);
      const key = versionKey(entry);
      const hit = this.slots.findIndex((s, i) => i > 0 && s.key === key && !s.loading);
      if (hit > 0) {
        this.events.hit('device');
        return this.pin(hit, name);
      }
      const inFlight = this.loads.get(key);
      if (inFlight) {
        await inFlight.catch((err) => {
          if (this.isCurrent(entry)) throw err;
        });
        continue;
      }
      const victim = this.pickSlot();
      if (victim < 0) {
        await this.waitForSlot(name, signal);
        continue;
      }
      this.events.miss('device');
      const load = this.load(entry, key, victim);
      this.loads.set(key, load);
      try {
        // The load pinned the slot for this caller the moment it finished: between that and this
        // continuation another acquire could otherwise take the slot for a different adapter.
        return this.lease(await load, name);
      } catch (err) {
        if (!this.isCurrent(entry)) continue;
        this.events.failed(name, err instanceof LoraServeError ? err.code : 'adapter_load_failed');
        throw err;
      } finally {
        this.loads.delete(key);
      }
    }
  }

  private pin(slot: number, name: string): Lease {
    this.slots[slot]!.pins++;
    return this.lease(slot, name);
  }

  /** A lease on a slot whose pin the caller has already counted. */
  private lease(slot: number, name: string): Lease {
    const s = this.slots[slot]!;
    s.lastUsed = ++this.clock;
    let released = false;
    return {
      slot,
      name,
      identity: s.identity!,
      release: () => {
        if (released) return;
        released = true;
        s.pins--;
        if (s.pins > 0) return;
        if (s.key !== null && s.key !== this.currentKey(s.name!)) this.freeSlot(slot);
        else this.wakeWaiters();
      },
    };
  }

  private isCurrent(entry: StoredAdapter): boolean {
    return this.store.get(entry.name)?.version === entry.version;
  }

  private currentKey(name: string): string | null {
    const e = this.store.get(name);
    return e ? versionKey(e) : null;
  }

  /** A free slot, else the least recently used unpinned one; -1 when all are pinned or loading. */
  private pickSlot(): number {
    let best = -1;
    for (let i = 1; i < this.slots.length; i++) {
      const s = this.slots[i]!;
      if (s.loading || s.pins > 0) continue;
      if (s.key === null) return i;
      if (best < 0 || s.lastUsed < this.slots[best]!.lastUsed) best = i;
    }
    return best;
  }

  /** Loads into `slot` and pins it once for the caller (see `acquire`). */
  private async load(entry: StoredAdapter, key: string, slot: number): Promise<number> {
    const s = this.slots[slot]!;
    if (s.key !== null) this.events.evict('device');
    // Evict before load: the slot is taken from its old adapter before the new one is read.
    s.key = key;
    s.name = entry.name;
    s.identity = `${key}#${entry.stamp}`;
    s.loading = true;
    try {
      let parsed = this.host.get(key)?.adapter;
      if (parsed) this.events.hit('host');
      else {
        this.events.miss('host');
        const files = await this.store.read(entry);
        parsed = this.parse(files.config, files.weights);
        this.host.set(key, { name: entry.name, adapter: parsed });
      }
      this.table.write(slot, parsed);
      s.loading = false;
      s.pins++;
      return slot;
    } catch (err) {
      s.key = null;
      s.name = null;
      s.identity = null;
      s.loading = false;
      this.table.clear(slot);
      this.wakeWaiters();
      if (err instanceof AdapterCorruptedError) throw err;
      // A sealed adapter passed validation at upload: if it no longer parses, its files changed.
      if (entry.sealed)
        throw new AdapterCorruptedError(`adapter "${entry.name}" is damaged on disk: ${(err as Error).message}; upload the adapter again`, {
          cause: err,
        });
      if (err instanceof LoraServeError) throw err;
      throw new AdapterLoadFailedError(`adapter "${entry.name}" could not be loaded: ${(err as Error).message}`, { cause: err });
    }
  }

  private waitForSlot(name: string, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiter = {
        name,
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(cancelled());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  private wakeWaiters(): void {
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w.wake();
  }

  /** Warms an adapter into a device slot without pinning it. */
  async warm(name: string): Promise<void> {
    (await this.acquire(name)).release();
  }

  /** Drops an adapter from both tiers; refuses while requests are using it. */
  unload(name: string): void {
    const entry = this.store.require(name);
    const key = versionKey(entry);
    const i = this.slots.findIndex((s, j) => j > 0 && s.key === key);
    if (i > 0 && (this.slots[i]!.pins > 0 || this.slots[i]!.loading)) {
      throw new AdapterInUseError(`adapter "${name}" is serving requests; unload it when they finish`);
    }
    if (i > 0) this.freeSlot(i);
    this.host.delete(key);
  }

  /**
   * Forgets every version of `name` that no request holds (after a replace or delete). Slots
   * still pinned keep serving their requests and are freed when the last one releases.
   */
  forget(name: string): void {
    const currentKey = this.currentKey(name);
    const stale = [...this.host.entries()].filter(([key, e]) => e.name === name && key !== currentKey).map(([key]) => key);
    for (const key of stale) this.host.delete(key);
    this.slots.forEach((s, i) => {
      if (i > 0 && s.name === name && s.key !== currentKey && s.pins === 0 && !s.loading) this.freeSlot(i);
    });
  }

  private freeSlot(i: number): void {
    const s = this.slots[i]!;
    s.key = null;
    s.name = null;
    s.identity = null;
    this.table.clear(i);
    this.wakeWaiters();
  }
}
