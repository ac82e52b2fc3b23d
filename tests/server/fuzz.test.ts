import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runFuzz } from '../../src/bench/index.js';

// Promise 6 (README, Reliability): bad input never reaches a 5xx. A small fixed-seed run of the
// fuzzer (`npm run fuzz -- --cases N --seed S` runs any other) against a real server process.
describe('fuzzer, fixed seed', () => {
  it('300 mutated requests: no 5xx, no crash, store unchanged, healthy afterwards', { timeout: 300_000 }, async () => {
    const report = await runFuzz({ cases: 300, seed: 1 });
    assert.deepEqual(report.findings, []);
    assert.equal(report.crashed, false);
    assert.equal(report.storeUnchanged, true);
    assert.equal(report.healthyAfter, true);
    assert.equal(report.exitCode, 0);
    // The run reached every kind of case, and some mutations were valid enough to be accepted.
    assert.deepEqual(Object.keys(report.byKind).sort(), [
      'adapter-config',
      'chat-bytes',
      'chat-json',
      'load-by-path',
      'misc',
      'multipart',
      'safetensors-header',
      'tar',
    ]);
    assert.ok(report.accepted > 0);
  });
});
