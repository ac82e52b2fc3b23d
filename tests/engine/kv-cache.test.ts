import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KvCache } from '../../src/engine/kv-cache.js';

const dims = { layers: 2, kvHeads: 2, headDim: 3 };
const H = dims.kvHeads;
const D = dims.headDim;

/** New keys for `rows.length` rows of `seq` tokens where entry (row i, head h, token t, d) = tag(i, h, t, d). */
function step(rows: number, seq: number, tag: (i: number, h: number, t: number, d: number) => number) {
  const k = new Float32Array(rows * H * seq * D);
  for (let i = 0; i < rows; i++)
    for (let h = 0; h < H; h++)
      for (let t = 0; t < seq; t++) for (let d = 0; d < D; d++) k[((i * H + h) * seq + t) * D + d] = tag(i, h, t, d);
  return Array.from({ length: dims.layers }, (_, l) => k.map((v) => v + 1000 * l));
}

/** Reads back row `row`'s cached keys of layer `l` through a past view. */
function cached(kv: KvCache, row: number, l = 0): number[][] {
  const view = kv.past([row]);
  const out: number[][] = [];
  for (let p = 0; p < kv.length(row); p++) out.push(Array.from(view.keys[l]!.subarray(p * D, (p + 1) * D)));
  return out;
}

describe('KvCache', () => {
  it('copyPrefix gives another row the first positions of a row, in every layer and head', () => {
    const kv = new KvCache(dims, 4096);
    const a = kv.acquireRow();
    kv.reserve(4);
    kv.append(
      [a],
      [4],
      4,
      step(1, 4, (_i, h, t, d) => 10 * h + t + d / 10),
      step(1, 4, (_i, h, t) => -(10 * h + t)),
    );
    const b = kv.acquireRow();
    kv.reserve(4);
    kv.copyPrefix(a, b, 3);
    assert.equal(kv.length(b), 3);
    for (const l of [0, 1]) assert.deepEqual(cached(kv, b, l), cached(kv, a, l).slice(0, 3));
    const head1 = kv.past([b]).keys[1]!;
    assert.deepEqual(
      Array.from(head1.subarray(3 * D, 4 * D)).map((v) => Math.round(v * 10) / 10),
      [1010, 1010.1, 1010.2],
      'layer 1, head 1, position 0',
    );
    assert.deepEqual(Array.from(kv.past([b]).values[0]!.subarray(0, 3 * D)), [0, 0, 0, -1, -1, -1, -2, -2, -2]);
    assert.throws(() => kv.copyPrefix(a, b, 5), RangeError);
  });

  it('writes each row at its own position and never moves other rows when rows join and leave', () => {
    const kv = new KvCache(dims, 4096);
    const a = kv.acquireRow();
    const b = kv.acquireRow();
    kv.reserve(3);
    kv.append(
      [a, b],
      [3, 2],
      3,
      step(2, 3, (i, h, t) => 100 * i + 10 * h + t),
      step(2, 3, () => 0),
    );
    assert.deepEqual(
      cached(kv, a).map((e) => e[0]),
      [0, 1, 2],
    );
    assert.deepEqual(
      cached(kv, b).map((e) => e[0]),
      [101, 102],
      'left padding skipped: the last `count` tokens are written',
    );
    kv.releaseRow(a);
    assert.equal(kv.span, 2, 'a hole below a live row keeps the span');
    const c = kv.acquireRow();
    assert.equal(c, a, 'the lowest free row is reused');
    assert.equal(kv.length(c), 0);
    assert.deepEqual(
      cached(kv, b).map((e) => e[0]),
      [101, 102],
      'the other row is untouched',
    );
  });

  it('grows capacity by re-laying the buffers with every row intact, and resets when empty', () => {
    const kv = new KvCache(dims, 4096);
    const rows = [kv.acquireRow(), kv.acquireRow()];
    kv.reserve(10);
    const first = kv.capacity;
    assert.ok(first >= 10 && first % 64 === 0);
    kv.append(
      rows,
      [10, 10],
      10,
      step(2, 10, (i, _h, t, d) => i * 1000 + t * 10 + d),
      step(2, 10, () => 1),
    );
    for (let t = 0; t < 60; t++) {
      kv.reserve(kv.length(0) + 1);
      kv.append(
        rows,
        [1, 1],
        1,
        step(2, 1, (i, _h, _t, d) => i * 1000 + (10 + t) * 10 + d),
        step(2, 1, () => 1),
      );
    }
    assert.ok(kv.capacity > first, 'capacity grew');
    for (const r of rows)
      assert.deepEqual(
        cached(kv, r).map((e) => e[1]),
        Array.from({ length: 70 }, (_, t) => r * 1000 + t * 10 + 1),
      );
    assert.deepEqual(cached(kv, 1, 1)[5], [1000 + 1050, 1000 + 1051, 1000 + 1052], 'every layer re-laid');
    const decodeView = kv.past([0, 1]);
    assert.equal(decodeView.length, kv.capacity, 'rows 0..n-1 are fed in place, at full capacity');
    assert.equal(decodeView.keys[0]!.length, 2 * H * kv.capacity * D);
    kv.releaseRow(0);
    kv.releaseRow(1);
    assert.equal(kv.floats, 0);
    assert.equal(kv.capacity, 0);
  });

  it('shrinks when the long rows have left, keeping the short ones', () => {
    const kv = new KvCache(dims, 4096);
    const long = kv.acquireRow();
    const short = kv.acquireRow();
    kv.reserve(600);
    kv.append(
      [long, short],
      [600, 5],
      600,
      step(2, 600, (i, _h, t) => i * 10000 + t),
      step(2, 600, () => 0),
    );
    const big = kv.capacity;
    kv.releaseRow(long);
    assert.ok(kv.capacity < big, `capacity ${kv.capacity} shrank from ${big}`);
    assert.deepEqual(
      cached(kv, short).map((e) => e[0]),
      [10595, 10596, 10597, 10598, 10599],
    );
  });

  it('a step over scattered rows gets a copy of just their cached positions', () => {
    const kv = new KvCache(dims, 4096);
    const rows = [kv.acquireRow(), kv.acquireRow(), kv.acquireRow()];
    kv.reserve(4);
    kv.append(
      rows,
      [4, 2, 3],
      4,
      step(3, 4, (i, _h, t) => 10 * i + t),
      step(3, 4, () => 0),
    );
    const view = kv.past([2, 0]);
    assert.equal(view.length, 4, 'the longest of the two');
    assert.equal(view.keys[0]!.length, 2 * H * 4 * D);
    assert.deepEqual(
      [0, 1, 2].map((p) => view.keys[0]![p * D]),
      [21, 22, 23],
    );
    assert.equal(kv.past([]).length, 0);
    assert.throws(
      () =>
        kv.append(
          [rows[1]!],
          [kv.capacity],
          kv.capacity,
          step(1, kv.capacity, () => 0),
          step(1, kv.capacity, () => 0),
        ),
      /needs/,
    );
  });
});
