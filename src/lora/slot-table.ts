import type { LinearModule, LoraLayout } from '../model/index.js';
import type { ParsedAdapter } from './adapter.js';

/**
 * The engine's adapter slots, fed to the graph as inputs: for every linear layer the slots'
 * matrices side by side, `A_all [in, (S-1)·R]` and `B_all [(S-1)·R, out]`, and `bias [S-1, out]`.
 * Slot 0 is the base model, the "no adapter" pseudo-adapter: it owns no columns, so base rows take
 * the same code path and add exactly zero. Slot s (1..S-1) owns block s-1.
 * Writing and clearing a slot are plain copies; which adapter goes where is the cache's business.
 */
export class SlotTable {
  readonly a = new Map<string, Float32Array>();
  readonly b = new Map<string, Float32Array>();
  readonly bias = new Map<string, Float32Array>();

  constructor(readonly layout: LoraLayout, readonly linears: LinearModule[]) {
    const width = (layout.slots - 1) * layout.maxRank;
    for (const m of linears) {
      this.a.set(m.name, new Float32Array(m.inFeatures * width));
      this.b.set(m.name, new Float32Array(width * m.outFeatures));
      this.bias.set(m.name, new Float32Array((layout.slots - 1) * m.outFeatures));
    }
  }

  get slots(): number {
    return this.layout.slots;
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
      const width = (this.layout.slots - 1) * R;
      const block = (slot - 1) * R;
      // A_all[i, block + k] = Aᵀ[i, k] for k < rank; the block's columns rank..R-1 stay zero.
      for (let i = 0; i < m.inFeatures; i++) a.set(t.a.subarray(i * t.rank, (i + 1) * t.rank), i * width + block);
      // B_all[block + k, :] = s·Bᵀ[k, :] for k < rank; rows rank..R-1 stay zero.
      b.set(t.b, block * m.outFeatures);
      if (t.bias) this.bias.get(m.name)!.set(t.bias, (slot - 1) * m.outFeatures);
    }
  }

  clear(slot: number): void {
    this.checkSlot(slot);
    const R = this.layout.maxRank;
    const width = (this.layout.slots - 1) * R;
    const block = (slot - 1) * R;
    for (const m of this.linears) {
      const a = this.a.get(m.name)!;
      for (let i = 0; i < m.inFeatures; i++) a.fill(0, i * width + block, i * width + block + R);
      this.b.get(m.name)!.fill(0, block * m.outFeatures, (block + R) * m.outFeatures);
      this.bias.get(m.name)!.fill(0, (slot - 1) * m.outFeatures, slot * m.outFeatures);
    }
  }

  private checkSlot(slot: number): void {
    if (!Number.isInteger(slot) || slot < 1 || slot >= this.layout.slots) throw new RangeError(`slot ${slot} is outside 1..${this.layout.slots - 1} (slot 0 is the base model)`);
  }
}
