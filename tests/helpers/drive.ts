import type { Engine } from '../../src/engine/index.js';
import { singleSlot, type AdapterMix } from '../../src/lora/index.js';
import { KvCache } from '../../src/engine/kv-cache.js';
import { decodeInputs, prefillInputs } from '../../src/engine/step-inputs.js';

/**
 * Drives engine.forward by hand for a batch of rows, the way the scheduler does: a left-padded
 * prefill into rows of a real KvCache, then decode steps over the cache's rows. Returns per-row
 * logits of each step. Each row names a slot (0 = base) or a weighted mix of slots.
 */
export async function prefill(engine: Engine, prompts: number[][], slots: Array<number | AdapterMix> = prompts.map(() => 0)) {
  const adapters = slots.map((s) => (typeof s === 'number' ? singleSlot(s) : s));
  const kv = new KvCache(engine.model.dims, engine.options.maxContext);
  const rows = prompts.map(() => kv.acquireRow());
  kv.reserve(Math.max(...prompts.map((p) => p.length)));
  const past = kv.past(rows);
  const tokens = prefillInputs(
    prompts.map((p) => ({ tokens: p, from: 0, count: p.length, cached: 0 })),
    past.length,
  );
  const out = await engine.forward({ ...tokens, adapters, past });
  kv.append(
    rows,
    prompts.map((p) => p.length),
    tokens.seq,
    out.keys,
    out.values,
  );
  const V = out.logits.length / prompts.length;
  return {
    logits: prompts.map((_, r) => out.logits.slice(r * V, (r + 1) * V)),
    state: { kv, rows, adapters },
  };
}

export async function decode(engine: Engine, state: Awaited<ReturnType<typeof prefill>>['state'], tokens: number[]) {
  const { kv, rows, adapters } = state;
  kv.reserve(Math.max(...rows.map((r) => kv.length(r) + 1)));
  const past = kv.past(rows);
  const inputs = decodeInputs(
    rows.map((r, i) => ({ token: tokens[i]!, cached: kv.length(r) })),
    past.length,
  );
  const out = await engine.forward({ ...inputs, adapters, past });
  kv.append(
    rows,
    rows.map(() => 1),
    1,
    out.keys,
    out.values,
  );
  const V = out.logits.length / tokens.length;
  return { logits: tokens.map((_, r) => out.logits.slice(r * V, (r + 1) * V)), state };
}
