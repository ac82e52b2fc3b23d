import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { BackendName } from '../helpers/backend.js';
import { skipWithoutWebgpu } from '../helpers/webgpu.js';

const ROOT = join(import.meta.dirname, '..', '..');

/**
 * The engine-level reference tests (float64 reference logits, logprobs, schedulers with n choices,
 * merges, quantization, grammar-constrained decoding), each written once against `createEngine`,
 * run again on the other backends.
 */
const PARITY_SUITE = [
  'tests/model/forward.test.ts',
  'tests/model/sliding-window.test.ts',
  'tests/lora/heterogeneous-batch.test.ts',
  'tests/lora/dora.test.ts',
  'tests/lora/adapter-mix.test.ts',
  'tests/lora/merge.test.ts',
  'tests/engine/logprobs.test.ts',
  'tests/engine/chunked-prefill.test.ts',
  'tests/engine/prefix-cache.test.ts',
  'tests/engine/scheduler.test.ts',
  'tests/engine/quantize.test.ts',
  'tests/grammar/structured-output.test.ts',
];

function runSuite(backend: BackendName): void {
  // A test file's process carries NODE_TEST_CONTEXT; a `node --test` that inherits it skips every
  // file ("run() is being called recursively") and exits 0, so the suite would pass unrun.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const child = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...PARITY_SUITE],
    {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...env, LORASERVE_TEST_BACKEND: backend },
      timeout: 40 * 60_000,
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  const output = `${child.stdout}${child.stderr}`;
  assert.equal(child.status, 0, `the parity suite failed on ${backend}:\n${output.slice(-6000)}`);
  // Every file ran and passed: the spec reporter's summary counts them.
  const passed = Number(/ℹ pass (\d+)/.exec(output)?.[1] ?? 0);
  assert.ok(passed >= PARITY_SUITE.length, `only ${passed} tests passed on ${backend}:\n${output.slice(-3000)}`);
}

describe('the parity suite on every backend', () => {
  it('cpu provider, device-resident cache graph (the graph WebGPU runs, checked where no GPU is)', () => runSuite('cpu-device'));
  it('webgpu provider (Vulkan: a GPU, or Mesa lavapipe on a CPU)', skipWithoutWebgpu(), () => runSuite('webgpu'));
});
