/**
 * Automatic prefix caching: the keys/values of prompts already read, kept after their requests
 * end, so a request that starts with the same tokens under the same adapters copies them into its
 * row and reads only the rest.
 *
 * - Tokens are hashed in blocks of `PREFIX_BLOCK`; block i's key chains block i − 1's key and the
 *   row's identity (`prefixKey`: what the row computes with — the base model, or each adapter's
 *   name and on-disk version stamp with its weight). A replaced or deleted adapter has a new
 *   identity, so its old blocks are never hit; they age out.
 * - Only full blocks are kept: a prompt that ends mid-block keeps the blocks before, and a request
 *   always reads at least its last prompt token (which gives the logits of its first output token).
 * - What a finished request adds is one extent: the blocks after those already cached, copied out
 *   of its row as one piece (`KvRows.snapshot`), whose parent is the extent holding the block
 *   before. Extents form a tree (a tenant's system prompt, each conversation below it, each turn
 *   below that); memory is counted exactly, `budgetBytes` bounds it, and eviction takes the least
 *   recently used extent that no other extent continues and no request is copying.
 * - The pieces live apart from the rows, so cached prefixes are never stepped and cost a decode
 *   step nothing; a hit is a copy into the request's own row (`KvRows.restore`). Positions after
 *   the prefix are the row's own, so rotary positions and sliding windows are as if it had read
 *   the whole prompt.
 */
import { createHash } from 'node:crypto';
import type { KvPiece, KvPlacement } from './kv-cache.js';

/** Tokens per hashed block. */
export const PREFIX_BLOCK = 16;

/** The identity of rows that run the base model alone. */
export const BASE_PREFIX_KEY = 'base';

/** One run of cached blocks (what one request added). */
export interface Extent {
  /** Chain keys of its blocks, in order. */
  keys: string[];
  /** Position its first block starts at; its parent's blocks cover the positions before. */
  start: number;
  parent: Extent | null;
  /** Extents whose parent this is (it is evictable only with none). */
  children: number;
  /** Requests copying from it now. */
  pins: number;
  lastUsed: number;
  piece: KvPiece;
}

/** The cached part of a prompt: where its pieces go in a row; `release` once copied. */
export interface PrefixHit {
  positions: number;
  placements: KvPlacement[];
  release(): void;
}

/** What a finished row should add: positions `start`..`start + count - 1` of its row. */
export interface PrefixPlan {
  start: number;
  count: number;
  keys: string[];
  parent: Extent | null;
}

export class PrefixCache {
  private readonly byKey = new Map<string, Extent>();
  private readonly extents = new Set<Extent>();
  private clock = 0;
  private used = 0;
  /** Prompt tokens looked up and found (vLLM's prefix_cache_queries / prefix_cache_hits), and extents evicted. */
  readonly counters = { queries: 0, hits: 0, evictions: 0 };

  constructor(
    readonly budgetBytes: number,
    /** Bytes one position takes (keys and values of every layer). */
    readonly bytesPerPosition: number,
  ) {}

  /** Bytes the cached pieces hold. */
  get bytes(): number {
    return this.used;
  }

  /** The longest cached run of `tokens`' full blocks under `identity`, at most `limit` positions (counted as a query). */
  lookup(identity: string, tokens: readonly number[], limit: number): PrefixHit | null {
    this.counters.queries += tokens.length;
    const keys = chainKeys(identity, tokens, Math.floor(Math.min(limit, tokens.length) / PREFIX_BLOCK));
    const found = this.found(keys);
    if (found === 0) return null;
    const placements: KvPlacement[] = [];
    const pinned: Extent[] = [];
    let end = found * PREFIX_BLOCK;
    const now = ++this.clock;
    for (let e: Extent | null = this.byKey.get(keys[found - 1]!)!; e; e = e.parent) {
      placements.push({ piece: e.piece, at: e.start, count: end - e.start });
      end = e.start;
      e.pins++;
      e.lastUsed = now;
      pinned.push(e);
    }
    this.counters.hits += found * PREFIX_BLOCK;
    let released = false;
    return {
      positions: found * PREFIX_BLOCK,
      placements,
      release: () => {
        if (released) return;
        released = true;
        for (const e of pinned) e.pins--;
      },
    };
  }

  /**
   * What a row holding `tokens` (their keys/values at positions 0..n-1) adds: the full blocks
   * after those cached, or null when all are (those are marked used).
   */
  plan(identity: string, tokens: readonly number[]): PrefixPlan | null {
    const keys = chainKeys(identity, tokens, Math.floor(tokens.length / PREFIX_BLOCK));
    const found = this.found(keys);
    const parent = found ? this.byKey.get(keys[found - 1]!)! : null;
    const now = ++this.clock;
    for (let e = parent; e; e = e.parent) e.lastUsed = now;
    if (found === keys.length) return null;
    return { start: found * PREFIX_BLOCK, count: (keys.length - found) * PREFIX_BLOCK, keys: keys.slice(found), parent };
  }

  /** Keeps `piece` (the plan's positions), evicting what the budget needs; releases it if it cannot stay. */
  add(plan: PrefixPlan, piece: KvPiece): void {
    const bytes = plan.count * this.bytesPerPosition;
    // The tree may have changed while the piece was copied out: its parent gone, or its blocks added.
    const stale = (plan.parent && !this.extents.has(plan.parent)) || this.byKey.has(plan.keys[0]!);
    if (plan.parent) plan.parent.pins++;
    let room = !stale && bytes <= this.budgetBytes;
    while (room && this.used + bytes > this.budgetBytes) room = this.evictOne();
    if (plan.parent) plan.parent.pins--;
    if (!room) {
      piece.release();
      return;
    }
    const extent: Extent = {
      keys: plan.keys,
      start: plan.start,
      parent: plan.parent,
      children: 0,
      pins: 0,
      lastUsed: ++this.clock,
      piece,
    };
    if (plan.parent) plan.parent.children++;
    for (const k of plan.keys) this.byKey.set(k, extent);
    this.extents.add(extent);
    this.used += bytes;
  }

  /** Drops every extent no request is copying. */
  clear(): void {
    while (this.evictOne());
  }

  /** How many of `keys` (a chain from the first block) are cached. */
  private found(keys: readonly string[]): number {
    let n = 0;
    while (n < keys.length && this.byKey.has(keys[n]!)) n++;
    return n;
  }

  /** Evicts the least recently used extent that nothing continues or copies; false when there is none. */
  private evictOne(): boolean {
    let victim: Extent | null = null;
    for (const e of this.extents) if (e.children === 0 && e.pins === 0 && (!victim || e.lastUsed < victim.lastUsed)) victim = e;
    if (!victim) return false;
    for (const k of victim.keys) this.byKey.delete(k);
    this.extents.delete(victim);
    if (victim.parent) victim.parent.children--;
    this.used -= victim.keys.length * PREFIX_BLOCK * this.bytesPerPosition;
    victim.piece.release();
    this.counters.evictions++;
    return true;
  }
}

/** The chain keys of the first `blocks` full blocks of `tokens` under `identity`. */
function chainKeys(identity: string, tokens: readonly number[], blocks: number): string[] {
  const keys: string[] = [];
  let parent = createHash('sha256').update(`loraserve-prefix\0${identity}`).digest('hex');
  for (let b = 0; b < blocks; b++) {
    const block = Int32Array.from(tokens.slice(b * PREFIX_BLOCK, (b + 1) * PREFIX_BLOCK));
    parent = createHash('sha256').update(parent).update(new Uint8Array(block.buffer)).digest('hex');
    keys.push(parent);
  }
  return keys;
}
