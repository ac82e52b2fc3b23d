import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SlotTable, singleSlot, type ParsedAdapter, type SlotModule } from '../../src/lora/index.js';
import type { LinearModule } from '../../src/model/index.js';

const linear = (name: string, inFeatures: number, outFeatures: number): LinearModule => ({
  name,
  layer: 0,
  inFeatures,
  outFeatures,
  weight: `${name}.weight`,
  bias: null,
  fanInFanOut: false,
});
const q = linear('q', 3, 2);
const v = linear('v', 3, 4);

/** An adapter whose A entries are `tag + index` so the packed layout can be read back. */
function adapter(tag: number, ranks: Record<string, number>, bias = false): ParsedAdapter {
  const modules = new Map<string, SlotModule>();
  for (const m of [q, v]) {
    const rank = ranks[m.name];
    if (!rank) continue;
    modules.set(m.name, {
      rank,
      a: Float32Array.from({ length: rank * m.inFeatures }, (_, i) => tag + i),
      b: Float32Array.from({ length: rank * m.outFeatures }, (_, i) => -(tag + i)),
      bias: bias ? new Float32Array(m.outFeatures).fill(tag) : null,
      dora: null,
    });
  }
  const maxRank = Math.max(...Object.values(ranks));
  return { modules, bytes: 0, config: {} as ParsedAdapter['config'], summary: { maxRank } as ParsedAdapter['summary'] };
}

describe('SlotTable packing', () => {
  it('packs only the slots a step uses, each block as wide as its adapter, zero-padded per module', () => {
    const table = new SlotTable({ slots: 64, maxRank: 64 }, [q, v]);
    table.write(3, adapter(100, { q: 2, v: 1 }, true));
    table.write(40, adapter(200, { q: 1 }));
    table.write(7, adapter(300, { q: 64, v: 64 }));
    const packed = table.pack([0, 40, 3, 3, 0]);
    assert.equal(packed.width, 3, 'ranks 2 + 1, not slots × max rank');
    assert.equal(packed.adapters, 3, 'the base model, then the two adapters');
    assert.deepEqual(packed.blocks.get(3), { index: 1, offset: 0, width: 2 });
    assert.deepEqual(packed.blocks.get(40), { index: 2, offset: 2, width: 1 });
    // A_packed rows: slot 3's two q rows, then slot 40's one q row
    assert.deepEqual(Array.from(packed.a.get('q')!), [100, 101, 102, 103, 104, 105, 200, 201, 202]);
    // v: slot 3 has rank 1 (second row of its block zero), slot 40 does not adapt v (zeros)
    assert.deepEqual(Array.from(packed.a.get('v')!), [100, 101, 102, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual(Array.from(packed.b.get('v')!.subarray(0, 4)), [-100, -101, -102, -103]);
    // gain: 1 for the base model, 0 for adapters without DoRA; shift: each adapter's own bias
    assert.deepEqual(Array.from(packed.gain.get('q')!), [1, 1, 0, 0, 0, 0]);
    assert.deepEqual(Array.from(packed.shift.get('q')!), [0, 0, 100, 100, 0, 0]);
    const w = SlotTable.rowWeights(packed, [0, 40, 3, 7].map(singleSlot));
    assert.deepEqual(Array.from(w.columns), [0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0], 'base rows and unpacked slots weigh nothing');
    assert.deepEqual(Array.from(w.rows), [1, 0, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0], 'every row applies the base model at weight 1');
  });

  it("folds DoRA's gain and the base bias it must not rescale into each adapter's gain and shift rows", () => {
    const biased = { ...q, bias: 'q.bias' };
    const table = new SlotTable({ slots: 4, maxRank: 8 }, [biased], new Map([['q', Float32Array.of(10, -4)]]));
    const dora = adapter(1, { q: 1 }, true);
    dora.modules.get('q')!.dora = Float32Array.of(1.5, 0.25);
    table.write(2, dora);
    // y = g ⊙ (W x + Δ) + b₀ + bias = F ⊙ (W x + b₀ + Δ) + C with F = g, C = bias − (g − 1) ⊙ b₀
    const packed = table.pack([2]);
    assert.deepEqual(Array.from(packed.gain.get('q')!), [1, 1, 0.5, -0.75]);
    assert.deepEqual(Array.from(packed.shift.get('q')!), [0, 0, 1 - 0.5 * 10, 1 - -0.75 * -4]);
  });

  it('a base-only step packs one zero column, and a write or clear is never served from a stale packing', () => {
    const table = new SlotTable({ slots: 4, maxRank: 8 }, [q, v]);
    const empty = table.pack([0, 0]);
    assert.equal(empty.width, 1);
    assert.ok(empty.a.get('q')!.every((x) => x === 0));
    table.write(1, adapter(10, { q: 1 }));
    const first = table.pack([1]);
    assert.equal(table.pack([1]), first, 'the same step reuses the packing');
    table.write(1, adapter(20, { q: 1 }));
    assert.equal(table.pack([1]).a.get('q')![0], 20);
    table.clear(1);
    assert.equal(table.pack([1]).width, 1, 'a cleared slot packs nothing');
    assert.throws(() => table.write(4, adapter(1, { q: 1 })), RangeError);
    assert.throws(() => table.write(2, adapter(1, { q: 9 })), /max rank/);
  });
});
