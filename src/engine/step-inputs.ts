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
  /** [batch, past + seq]: 1 for each row's cached positions and its real new tokens. */
  mask: BigInt64Array;
  /** [M]: indices into the flattened [batch·seq] new tokens whose logits the step returns, row by row. */
  logitRows: BigInt64Array;
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
 * last column; `past` is the length of the past fed to the graph. Row r's logits start at
 * `logitStart[r]` of the output: one row of logits (its last token), or `count` rows (`allLogits`).
 */
export function prefillInputs(rows: readonly PrefillRow[], past: number): StepTokens & { logitStart: number[] } {
  const batch = rows.length;
  const seq = Math.max(...rows.map((r) => r.count));
  const ids = new Int32Array(batch * seq);
  const positions = new BigInt64Array(batch * seq);
  const mask = new BigInt64Array(batch * (past + seq));
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
    mask.fill(1n, r * (past + seq), r * (past + seq) + row.cached);
    mask.fill(1n, r * (past + seq) + past + pad, (r + 1) * (past + seq));
  });
  return { batch, seq, ids, positions, mask, logitRows: BigInt64Array.from(logitRows), logitStart };
}

/** One row of a decode step: its last token and cached length, or null for a row that idles. */
export interface DecodeRow {
  token: number;
  cached: number;
}

/**
 * A decode step's inputs over the cache rows 0..n-1 (fed as they are, without a copy). Idle rows
 * (free, or still in prefill) compute a throw-away token that attends only to itself.
 */
export function decodeInputs(rows: ReadonlyArray<DecodeRow | null>, past: number): StepTokens {
  const batch = rows.length;
  const ids = new Int32Array(batch);
  const positions = new BigInt64Array(batch);
  const mask = new BigInt64Array(batch * (past + 1));
  rows.forEach((row, r) => {
    mask[r * (past + 1) + past] = 1n;
    if (!row) return;
    ids[r] = row.token;
    positions[r] = BigInt(row.cached);
    mask.fill(1n, r * (past + 1), r * (past + 1) + row.cached);
  });
  return { batch, seq: 1, ids, positions, mask, logitRows: BigInt64Array.from(rows, (_, r) => BigInt(r)) };
}
