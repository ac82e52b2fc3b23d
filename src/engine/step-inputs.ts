/**
 * Batch packing: turns the sequences chosen for a step into the flat inputs of one forward pass.
 * Pure functions over plain data, so they are unit-tested without a model.
 */

/** One row of a prefill step: `count` prompt tokens starting at prompt index `from`. */
export interface PrefillRow {
  tokens: readonly number[];
  from: number;
  count: number;
  /** Positions of this row already cached (the past it attends to). */
  cached: number;
  /** Logits at every position of the chunk (prompt logprobs), not only at its last. */
  allLogits?: boolean;
}

export interface StepTokens {
  batch: number;
  seq: number;
  ids: Int32Array;
  positions: BigInt64Array;
  /** [M]: indices into the flattened [batch·seq] new tokens whose logits the step returns, row by row. */
  logitRows: BigInt64Array;
  /** Per row: positions already cached, which its new tokens follow. */
  cached: number[];
  /** Per row: real new tokens, the last `count` of its `seq` columns (0: a row that idles). */
  counts: number[];
}

/**
 * Chooses the prompt chunks of one prefill step: sequences in order, each contributing up to
 * `chunk` tokens, while the padded batch (rows × longest chunk) stays within `maxTokens`. The first
 * candidate always gets in, so a step makes progress whatever the limits.
 */
export function choosePrefill(remaining: readonly number[], chunk: number, maxTokens: number): number[] {
  const counts: number[] = [];
  let longest = 0;
  for (const left of remaining) {
    const count = Math.min(left, chunk);
    const padded = Math.max(longest, count) * (counts.length + 1);
    if (counts.length && padded > maxTokens) break;
    longest = Math.max(longest, count);
    counts.push(count);
  }
  return counts;
}

/**
 * A prefill step's inputs. New tokens are left-padded so every row's last chunk token sits in the
 * last column. Row r's logits start at `logitStart[r]` of the output: one row of logits (its last
 * token), or `count` rows (`allLogits`).
 */
export function prefillInputs(rows: readonly PrefillRow[]): StepTokens & { logitStart: number[] } {
  const batch = rows.length;
  const seq = Math.max(...rows.map((r) => r.count));
  const ids = new Int32Array(batch * seq);
  const positions = new BigInt64Array(batch * seq);
  const logitRows: bigint[] = [];
  const logitStart: number[] = [];
  rows.forEach((row, r) => {
    const pad = seq - row.count;
    logitStart.push(logitRows.length);
    for (let j = row.allLogits ? pad : seq - 1; j < seq; j++) logitRows.push(BigInt(r * seq + j));
    for (let j = 0; j < row.count; j++) {
      ids[r * seq + pad + j] = row.tokens[row.from + j]!;
      positions[r * seq + pad + j] = BigInt(row.cached + j);
    }
  });
  return {
    batch,
    seq,
    ids,
    positions,
    logitRows: BigInt64Array.from(logitRows),
    logitStart,
    cached: rows.map((r) => r.cached),
    counts: rows.map((r) => r.count),
  };
}

/** One row of a decode step: its last token and cached length, or null for a row that idles. */
export interface DecodeRow {
  token: number;
  cached: number;
}

/**
 * A decode step's inputs over the cache rows 0..n-1 (fed as they are, without a copy). Idle rows
 * (free, paused, or still in prefill) compute a throw-away token that is never cached and get no
 * logits: the stepping rows' logits come back in row order.
 */
export function decodeInputs(rows: ReadonlyArray<DecodeRow | null>): StepTokens {
  const batch = rows.length;
  const ids = new Int32Array(batch);
  const positions = new BigInt64Array(batch);
  rows.forEach((row, r) => {
    if (!row) return;
    ids[r] = row.token;
    positions[r] = BigInt(row.cached);
  });
  return {
    batch,
    seq: 1,
    ids,
    positions,
    // Only rows that step get logits: an idle row's would be computed (the LM head is the widest
    // GEMM) and, on a GPU, brought back for nothing.
    logitRows: BigInt64Array.from(rows.flatMap((row, r) => (row ? [BigInt(r)] : []))),
    cached: rows.map((row) => row?.cached ?? 0),
    counts: rows.map((row) => (row ? 1 : 0)),
  };
}

/**
 * The host-cache graph's attention mask `[batch, past + seq]`: 1 for each row's cached positions
 * and its real new tokens. An idle row's token attends only to itself.
 */
export function hostAttentionMask(step: Pick<StepTokens, 'batch' | 'seq' | 'cached' | 'counts'>, past: number): BigInt64Array {
  const { batch, seq } = step;
  const width = past + seq;
  const mask = new BigInt64Array(batch * width);
  for (let r = 0; r < batch; r++) {
    const count = step.counts[r]!;
    if (count > 0) mask.fill(1n, r * width, r * width + step.cached[r]!);
    mask.fill(1n, r * width + past + seq - Math.max(count, 1), (r + 1) * width);
  }
  return mask;
}

/**
 * The device-cache graph's write positions `[batch, kvHeads, seq, 3]`: each real new token of
 * batch row b goes to (rows[b], head, its position); padding and idle tokens go to the scratch
 * column, which no query sees.
 */
export function deviceKvIndex(
  step: Pick<StepTokens, 'batch' | 'seq' | 'cached' | 'counts'>,
  rows: readonly number[],
  kvHeads: number,
  scratchColumn: number,
): BigInt64Array {
  const { batch, seq } = step;
  const index = new BigInt64Array(batch * kvHeads * seq * 3);
  for (let b = 0; b < batch; b++) {
    const pad = seq - step.counts[b]!;
    for (let h = 0; h < kvHeads; h++) {
      for (let t = 0; t < seq; t++) {
        const at = ((b * kvHeads + h) * seq + t) * 3;
        index[at] = BigInt(rows[b]!);
        index[at + 1] = BigInt(h);
        index[at + 2] = BigInt(t < pad ? scratchColumn : step.cached[b]! + t - pad);
      }
    }
  }
  return index;
}
