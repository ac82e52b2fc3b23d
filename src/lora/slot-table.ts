import type { LinearModule, LoraLayout } from '../model/index.js';
import type { ParsedAdapter } from './adapter.js';

/**
 * The LoRA tensors of one step: only the adapters its rows use, packed side by side. Adapter u owns
 * columns [offset_u, offset_u + width_u) of every module, width_u = its largest rank; modules where
 * its rank is smaller, or that it does not adapt, hold zeros there. Packed adapter 0 is always the
 * base model (slot 0), which owns no columns and which every row applies at weight 1.
 */
export interface PackedLora {
  /** W: columns of all packed adapters together. */
  width: number;
  /** U: adapters packed, the base model's row 0 included. */
  adapters: number;
  /**
   * Per module: A_packed [W, in] (PEFT's lora_A rows), B_packed [W, out] (s·Bᵀ), and the rows of
   * the per-row output transform y = (R·gain) ⊙ (W x + b₀ + Δ) + R·shift (see `moduleRows`):
   * gain [U, out] and shift [U, out].
   */
  a: Map<string, Float32Array>;
  b: Map<string, Float32Array>;
  gain: Map<string, Float32Array>;
  shift: Map<string, Float32Array>;
  /** Slot → its adapter index u (≥ 1) and column block. */
  blocks: Map<number, { index: number; offset: number; width: number }>;
}

/**
 * The adapters one row applies, each with its weight: [] is the base model, one entry of weight 1
 * a plain adapter, several a weighted mix (y = W x + Σ wᵢ sᵢ Bᵢ Aᵢ x). Slots are distinct.
 */
export type AdapterMix = ReadonlyArray<{ slot: number; weight: number }>;

/** The mix of a single slot (0 = the base model). */
export const singleSlot = (slot: number): AdapterMix => (slot > 0 ? [{ slot, weight: 1 }] : []);

/** Per-row weights over a packed step: `columns` [B, W] and `rows` [B, U]. */
export interface RowWeights {
  columns: Float32Array;
  rows: Float32Array;
}

/** The packed-adapter index of the base model: every row applies it at weight 1. */
const BASE_INDEX = 0;

/**
 * The engine's adapter slots. Slot 0 is the base model, the "no adapter" pseudo-adapter: it owns no
 * columns, so base rows take the same code path and add exactly zero. A slot holds a reference to
 * the adapter's parsed tensors; each step packs only the slots its rows use (`pack`), so a step's
 * LoRA cost follows the adapters in the batch, not the number of slots or the largest rank allowed.
 * Which adapter goes where is the cache's business.
 */
export class SlotTable {
  private readonly held: Array<ParsedAdapter | null>;
  /** Bumped on every write or clear, so a cached packing is never reused across a change. */
  private generation = 0;
  private lastPack: { key: string; packed: PackedLora } | null = null;

  constructor(
    readonly layout: LoraLayout,
    readonly linears: LinearModule[],
    /** The base model's bias b₀ of each module that has one (a DoRA gain rescales it: see `moduleRows`). */
    private readonly baseBiases: ReadonlyMap<string, Float32Array> = new Map(),
  ) {
    this.held = Array.from({ length: layout.slots }, () => null);
  }

  get slots(): number {
    return this.layout.slots;
  }

  /** Puts an adapter into slot `slot` (1..S-1). */
  write(slot: number, adapter: ParsedAdapter): void {
    this.checkSlot(slot);
    if (adapter.summary.maxRank > this.layout.maxRank)
      throw new RangeError(`adapter rank ${adapter.summary.maxRank} exceeds the slots' max rank ${this.layout.maxRank}`);
    this.held[slot] = adapter;
    this.generation++;
  }

  clear(slot: number): void {
    this.checkSlot(slot);
    this.held[slot] = null;
    this.generation++;
  }

  /**
   * Where the adapters in `slots` (any order, repeats and 0 ignored) sit in a step's packing: each
   * used slot's adapter index (after the base model's 0) and column block. A step without adapters
   * still has one all-zero column: ORT's kernels do not all take zero-sized dimensions, and one
   * column costs nothing measurable.
   */
  blocksFor(slots: Iterable<number>): Pick<PackedLora, 'width' | 'adapters' | 'blocks'> {
    const used = [...new Set(slots)].filter((s) => s > 0 && this.held[s]).sort((x, y) => x - y);
    const blocks = new Map<number, { index: number; offset: number; width: number }>();
    let width = 0;
    used.forEach((slot, i) => {
      const w = this.held[slot]!.summary.maxRank;
      blocks.set(slot, { index: BASE_INDEX + 1 + i, offset: width, width: w });
      width += w;
    });
    return { width: Math.max(1, width), adapters: 1 + used.length, blocks };
  }

  /** The adapter a slot holds (null: empty). */
  adapterIn(slot: number): ParsedAdapter | null {
    return this.held[slot] ?? null;
  }

  /**
   * Packs the adapters in `slots` for one step (see `layout`). The last packing is kept: a running
   * batch uses the same adapters step after step.
   */
  pack(slots: Iterable<number>): PackedLora {
    const { width, adapters, blocks } = this.blocksFor(slots);
    const key = `${this.generation}:${[...blocks.keys()].join(',')}`;
    if (this.lastPack?.key === key) return this.lastPack.packed;
    const packed: PackedLora = { width, adapters, a: new Map(), b: new Map(), gain: new Map(), shift: new Map(), blocks };
    for (const m of this.linears) {
      const a = new Float32Array(width * m.inFeatures);
      const b = new Float32Array(width * m.outFeatures);
      const gain = new Float32Array(adapters * m.outFeatures);
      const shift = new Float32Array(adapters * m.outFeatures);
      gain.set(this.moduleRows(null, m).gain, BASE_INDEX * m.outFeatures);
      for (const [slot, block] of blocks) {
        const adapter = this.held[slot]!;
        const t = adapter.modules.get(m.name);
        // A_packed[offset + k, :] = A[k, :] and B_packed[offset + k, :] = s·Bᵀ[k, :] for k < rank;
        // rows rank..width-1 of the block stay zero.
        if (t) {
          a.set(t.a, block.offset * m.inFeatures);
          b.set(t.b, block.offset * m.outFeatures);
        }
        const rows = this.moduleRows(adapter, m);
        gain.set(rows.gain, block.index * m.outFeatures);
        shift.set(rows.shift, block.index * m.outFeatures);
      }
      packed.a.set(m.name, a);
      packed.b.set(m.name, b);
      packed.gain.set(m.name, gain);
      packed.shift.set(m.name, shift);
    }
    this.lastPack = { key, packed };
    return packed;
  }

  /**
   * An adapter's rows of the per-row output transform of module m (null: the base model's).
   * PEFT computes y = W x + b₀ + Δ + bias (LoRA's own bias) and, for DoRA, rescales everything but
   * b₀: y = g ⊙ (W x + Δ) + b₀ + bias. Both are y = F ⊙ (W x + b₀ + Δ) + C with F = 1 + R·(g − 1)
   * and C = R·(bias − (g − 1) ⊙ b₀) over the row's adapter weights R: the base model contributes
   * gain 1 (every row applies it at weight 1), an adapter g − 1 (0 without DoRA) and its shift.
   */
  moduleRows(adapter: ParsedAdapter | null, m: LinearModule): { gain: Float32Array; shift: Float32Array } {
    const gain = new Float32Array(m.outFeatures);
    const shift = new Float32Array(m.outFeatures);
    if (!adapter) return { gain: gain.fill(1), shift };
    const t = adapter.modules.get(m.name);
    if (!t) return { gain, shift };
    const b0 = this.baseBiases.get(m.name);
    for (let o = 0; o < m.outFeatures; o++) {
      gain[o] = t.dora ? t.dora[o]! - 1 : 0;
      shift[o] = (t.bias?.[o] ?? 0) - gain[o]! * (b0?.[o] ?? 0);
    }
    return { gain, shift };
  }

  /**
   * Each row's weights over a packing: its mix's weight on each of its adapters' columns and index,
   * 0 elsewhere, and 1 on the base model's index (base rows: only that). A mix is the output-space
   * sum Σ wᵢ (sᵢ Bᵢ Aᵢ x + biasᵢ).
   */
  static rowWeights(packed: Pick<PackedLora, 'width' | 'adapters' | 'blocks'>, rowAdapters: ReadonlyArray<AdapterMix>): RowWeights {
    const B = rowAdapters.length;
    const columns = new Float32Array(B * packed.width);
    const rows = new Float32Array(B * packed.adapters);
    for (let r = 0; r < B; r++) {
      rows[r * packed.adapters + BASE_INDEX] = 1;
      for (const { slot, weight } of rowAdapters[r]!) {
        const block = packed.blocks.get(slot);
        if (!block) continue;
        columns.fill(weight, r * packed.width + block.offset, r * packed.width + block.offset + block.width);
        rows[r * packed.adapters + block.index] = weight;
      }
    }
    return { columns, rows };
  }

  /** True when the adapter in `slot` is a DoRA adapter (its rescaling is defined for it alone, at weight 1). */
  isDora(slot: number): boolean {
    return this.held[slot]?.config.useDora === true;
  }

  private checkSlot(slot: number): void {
    if (!Number.isInteger(slot) || slot < 1 || slot >= this.layout.slots)
      throw new RangeError(`slot ${slot} is outside 1..${this.layout.slots - 1} (slot 0 is the base model)`);
  }
}
