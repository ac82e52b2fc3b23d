import assert from 'node:assert/strict';
import type { Engine } from '../../src/engine/index.js';
import type { TinyModel } from '../../src/testing/index.js';
import { referenceLogits, relError, type RefAdapters } from './reference.js';
import { singleSlot, type AdapterMix } from '../../src/lora/index.js';
import { decodeInputs, prefillInputs } from '../../src/engine/step-inputs.js';

/**
 * Drives engine.forward by hand for a batch of rows, the way the scheduler does: a left-padded
 * prefill into rows of the engine's own cache (host or device), then decode steps over those rows.
 * Returns per-row logits of each step. Each row names a slot (0 = base) or a weighted mix of slots.
 * The rows stay owned until `release`.
 */
export async function prefill(engine: Engine, prompts: number[][], slots: Array<number | AdapterMix> = prompts.map(() => 0)) {
  const adapters = slots.map((s) => (typeof s === 'number' ? singleSlot(s) : s));
  const kv = engine.cache;
  const rows = prompts.map(() => kv.acquireRow());
  kv.reserve(Math.max(...prompts.map((p) => p.length)));
  const tokens = prefillInputs(prompts.map((p) => ({ tokens: p, from: 0, count: p.length, cached: 0 })));
  const out = await engine.forward({ ...tokens, adapters, rows });
  const V = out.logits.length / prompts.length;
  return {
    logits: prompts.map((_, r) => out.logits.slice(r * V, (r + 1) * V)),
    state: { rows, adapters },
  };
}

export async function decode(engine: Engine, state: Awaited<ReturnType<typeof prefill>>['state'], tokens: number[]) {
  const { rows, adapters } = state;
  const kv = engine.cache;
  kv.reserve(Math.max(...rows.map((r) => kv.length(r) + 1)));
  const inputs = decodeInputs(rows.map((r, i) => ({ token: tokens[i]!, cached: kv.length(r) })));
  const out = await engine.forward({ ...inputs, adapters, rows });
  const V = out.logits.length / tokens.length;
  return { logits: tokens.map((_, r) => out.logits.slice(r * V, (r + 1) * V)), state };
}

/** Gives the rows of a `prefill` back to the engine's cache. */
export function release(engine: Engine, state: Awaited<ReturnType<typeof prefill>>['state']): void {
  for (const row of state.rows) engine.cache.releaseRow(row);
}

/**
 * Prefills `prompts` as one batch (row r with `rows[r]`), decodes `next[r]` once, and asserts each
 * row's logits equal the float64 reference with `refs[r]` at both steps. Returns the batch's logits.
 */
export async function assertBatchMatchesReference(
  engine: Engine,
  tiny: TinyModel,
  batchRows: { prompts: number[][]; rows: Array<number | AdapterMix>; refs: RefAdapters[]; next: number[] },
  tol: number,
): Promise<{ prefill: Float32Array[]; decode: Float32Array[] }> {
  const { prompts, rows, refs, next } = batchRows;
  const batch = await prefill(engine, prompts, rows);
  const stepped = await decode(engine, batch.state, next);
  release(engine, batch.state);
  for (let r = 0; r < prompts.length; r++) {
    const ref = referenceLogits(tiny, [...prompts[r]!, next[r]!], refs[r]);
    const atPrefill = relError(batch.logits[r]!, ref[prompts[r]!.length - 1]!);
    assert.ok(atPrefill < tol, `row ${r} prefill: ${atPrefill}`);
    assert.ok(relError(stepped.logits[r]!, ref[prompts[r]!.length]!) < tol, `row ${r} decode`);
  }
  return { prefill: batch.logits, decode: stepped.logits };
}
