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

  it('a bit-flipped upload that names another valid adapter is cleaned up under the name the server gave it (seed 19644, case 114)', {
    timeout: 300_000,
  }, async () => {
    const report = await runFuzz({ cases: 1000, seed: 19644, only: 114 });
    assert.deepEqual(report.byKind.multipart?.statuses, { 201: 1 }, 'the mutated upload is accepted');
    assert.equal(report.storeUnchanged, true);
    assert.deepEqual(report.findings, []);
  });

  it('a mutated load_lora_adapter body that names another valid adapter is cleaned up under that name (seed 20271, case 401)', {
    timeout: 300_000,
  }, async () => {
    const report = await runFuzz({ cases: 1000, seed: 20271, only: 401 });
    assert.deepEqual(report.byKind['load-by-path']?.statuses, { 200: 1 }, 'the mutated load is accepted');
    assert.equal(report.storeUnchanged, true);
    assert.deepEqual(report.findings, []);
  });
});
