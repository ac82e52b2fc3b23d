import type { LinearModule, LoraLayout } from '../model/index.js';
import type { ParsedAdapter } from './adapter.js';

/**
 * The engine's S adapter slots: for every linear layer, stacked `A [S, in, R]`, `B [S, R, out]`
 * and `bias [S, out]`, fed to the graph as inputs. Slot 0 stays all zeros: the base model is the
 * "no adapter" pseudo-adapter, so base rows take the same code path as adapted ones.
 * Writing and clearing a slot are plain copies; which adapter goes where is the cache's business.
 */
export class SlotTable {
  readonly a = new Map<string, Float32Array>();
  readonly b = new Map<string, Float32Array>();
  readonly bias = new Map<string, Float32Array>();

  constructor(readonly layout: LoraLayout, readonly linears: LinearModule[]) {
    const { slots, maxRank: R } = layout;
    for (const m of linears) {
      this.a.set(m.name, new Float32Array(slots * m.inFeatures * R));
      this.b.set(m.name, new Float32Array(slots * R * m.outFeatures));
      this.bias.set(m.name, new Float32Array(slots * m.outFeatures));
    }
  }

  get slots(): number {
    return this.layout.slots;
  }

  /** Bytes the slot tensors hold, all slots together. */
  get bytes(): number {
    let n = 0;
    for (const map of [this.a, this.b, this.bias]) for (const t of map.values()) n += t.byteLength;
    return n;
  }

  /** Copies an adapter into slot `slot` (1..S-1), zero-padding its ranks up to R. */
  write(slot: number, adapter: ParsedAdapter): void {
    this.checkSlot(slot);
    this.clear(slot);
    const R = this.layout.maxRank;
    for (const m of this.linears) {
      const t = adapter.modules.get(m.name);
      if (!t) continue;
      const a = this.a.get(m.name)!;
      const b = this.b.get(m.name)!;
      // A_slots[slot][i, k] = Aᵀ[i, k] for k < rank; columns rank..R-1 stay zero.
      const aBase = slot * m.inFeatures * R;
      for (let i = 0; i < m.inFeatures; i++) a.set(t.a.subarray(i * t.rank, (i + 1) * t.rank), aBase + i * R);
      // B_slots[slot][k, :] = s·Bᵀ[k, :] for k < rank; rows rank..R-1 stay zero.
      b.set(t.b, slot * R * m.outFeatures);
      if (t.bias) this.bias.get(m.name)!.set(t.bias, slot * m.outFeatures);
    }
  }

  clear(slot: number): void {
    this.checkSlot(slot);
    const R = this.layout.maxRank;
    for (const m of this.linears) {
      this.a.get(m.name)!.fill(0, slot * m.inFeatures * R, (slot + 1) * m.inFeatures * R);
      this.b.get(m.name)!.fill(0, slot * R * m.outFeatures, (slot + 1) * R * m.outFeatures);
      this.bias.get(m.name)!.fill(0, slot * m.outFeatures, (slot + 1) * m.outFeatures);
    }
  }

  private checkSlot(slot: number): void {
    if (!Number.isInteger(slot) || slot < 1 || slot >= this.layout.slots) throw new RangeError(`slot ${slot} is outside 1..${this.layout.slots - 1} (slot 0 is the base model)`);
  }
}
