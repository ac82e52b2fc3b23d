import type { Engine } from '../../src/engine/index.js';

/**
 * Drives engine.forward by hand for a batch of rows: a left-padded prefill, then decode steps
 * feeding the cache back, the way the scheduler does. Returns per-row logits of each step.
 */
export async function prefill(engine: Engine, prompts: number[][], slots: number[] = prompts.map(() => 0)) {
  const { layers } = engine.model.dims;
  const batch = prompts.length;
  const seq = Math.max(...prompts.map((p) => p.length));
  const ids = new BigInt64Array(batch * seq);
  const positions = new BigInt64Array(batch * seq);
  const mask = new BigInt64Array(batch * seq);
  prompts.forEach((p, r) => {
    const pad = seq - p.length;
    p.forEach((tok, j) => {
      ids[r * seq + pad + j] = BigInt(tok);
      positions[r * seq + pad + j] = BigInt(j);
      mask[r * seq + pad + j] = 1n;
    });
  });
  const empty = Array.from({ length: layers }, () => new Float32Array(0));
  const out = await engine.forward({ batch, seq, ids, positions, mask, slots: BigInt64Array.from(slots, BigInt), pastLength: 0, pastKeys: empty, pastValues: empty });
  const V = out.logits.length / batch;
  return {
    logits: prompts.map((_, r) => out.logits.slice(r * V, (r + 1) * V)),
    state: { keys: out.keys, values: out.values, length: seq, mask, lengths: prompts.map((p) => p.length), slots },
  };
}

export async function decode(engine: Engine, state: Awaited<ReturnType<typeof prefill>>['state'], tokens: number[]) {
  const batch = tokens.length;
  const S = state.length + 1;
  const mask = new BigInt64Array(batch * S);
  for (let r = 0; r < batch; r++) {
    for (let p = 0; p < state.length; p++) mask[r * S + p] = state.mask[r * state.length + p]!;
    mask[r * S + state.length] = 1n;
  }
  const out = await engine.forward({
    batch, seq: 1, ids: BigInt64Array.from(tokens, BigInt), positions: BigInt64Array.from(state.lengths, BigInt), mask,
    slots: BigInt64Array.from(state.slots, BigInt), pastLength: state.length, pastKeys: state.keys, pastValues: state.values,
  });
  const V = out.logits.length / batch;
  return {
    logits: tokens.map((_, r) => out.logits.slice(r * V, (r + 1) * V)),
    state: { ...state, keys: out.keys, values: out.values, length: S, mask, lengths: state.lengths.map((l) => l + 1) },
  };
}
