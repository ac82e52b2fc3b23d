/**
 * Log-probabilities of the model's raw next-token distribution (log-softmax of the logits, before
 * penalties, temperature, top-k/top-p), as OpenAI and vLLM report them by default.
 */
export interface TokenLogprob {
  token: number;
  logprob: number;
  /** The `k` most likely tokens at this position, most likely first (k = the request's top count). */
  top: Array<{ token: number; logprob: number }>;
}

/** The logprob of `token` and the `k` most likely tokens, from one position's logits. */
export function tokenLogprob(logits: Float32Array, token: number, k: number): TokenLogprob {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const logZ = max + Math.log(sum);
  return { token, logprob: logits[token]! - logZ, top: topK(logits, k).map((t) => ({ token: t, logprob: logits[t]! - logZ })) };
}

/** Indices of the k largest entries, largest first (k ≤ 20: a small sorted insertion list). */
function topK(a: Float32Array, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < a.length && k > 0; i++) {
    if (best.length === k && a[i]! <= a[best[k - 1]!]!) continue;
    let at = best.length === k ? k - 1 : best.length;
    while (at > 0 && a[best[at - 1]!]! < a[i]!) at--;
    best.splice(at, 0, i);
    if (best.length > k) best.pop();
  }
  return best;
}
