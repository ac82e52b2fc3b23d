import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { bestPrecision, bestRatio, equalPrecisionRatio } from '../../src/bench/peer-ratios.js';

const PEER_OF = { fp32: 'F32', int8: 'Q8_0', int4: 'Q4_0' };
// The figures for 32 requests over 8 adapters: our best is int8, the peer's Q4_0.
const ours = { fp32: 117.4, int8: 142.5, int4: 128.7 };
const peer = { F32: 40.7, Q8_0: 51.4, Q4_0: 101.8 };

describe('peer ratios', () => {
  it('picks the fastest precision, the first of equals', () => {
    assert.deepEqual(bestPrecision(ours), { precision: 'int8', value: 142.5 });
    assert.deepEqual(bestPrecision({ a: 2, b: 2 }), { precision: 'a', value: 2 });
    assert.equal(bestPrecision({}), null);
  });

  it('compares our fastest precision with the peer at the same precision', () => {
    assert.equal(equalPrecisionRatio(ours, peer, PEER_OF), 2.772);
  });

  it("compares our fastest precision with the peer's fastest", () => {
    assert.equal(bestRatio(ours, peer), 1.4);
    assert.equal(bestRatio({ fp32: 15.5, int8: 29.9, int4: 41.9 }, { F32: 16.8, Q8_0: 27.7, Q4_0: 38.2 }), 1.097);
  });

  it('is null when a side has no figure', () => {
    assert.equal(bestRatio(ours, {}), null);
    assert.equal(bestRatio({}, peer), null);
    assert.equal(equalPrecisionRatio(ours, { F32: 40.7, Q4_0: 101.8 }, PEER_OF), null);
  });
});
