/** Per-request token sampling: greedy, temperature, top-k, top-p, OpenAI penalties, seeded RNG. */
export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number;
  topP: number;
  /** 0 = no limit. */
  topK: number;
  frequencyPenalty: number;
  presencePenalty: number;
  /** transformers/vLLM repetition penalty over prompt and output tokens; 1 = off. */
  repetitionPenalty: number;
  seed: number | null;
}

export const DEFAULT_SAMPLING: SamplingParams = {
  temperature: 1,
  topP: 1,
  topK: 0,
  frequencyPenalty: 0,
  presencePenalty: 0,
  repetitionPenalty: 1,
  seed: null,
};

/** xoshiro128** seeded through splitmix32: reproducible per request, independent across requests. */
export function seededRandom(seed: number): () => number {
  let x = seed >>> 0;
  const split = () => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  const s = [split(), split(), split(), split()];
  return () => {
    const result = Math.imul(((Math.imul(s[1]!, 5) << 7) | (Math.imul(s[1]!, 5) >>> 25)) >>> 0, 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = ((s[3]! << 11) | (s[3]! >>> 21)) >>> 0;
    return result / 4294967296;
  };
}

export class Sampler {
  private readonly random: () => number;
  private readonly counts = new Map<number, number>();
  /** Prompt and output tokens, for the repetition penalty. */
  private readonly seen = new Set<number>();

  constructor(
    readonly params: SamplingParams,
    promptTokens: readonly number[] = [],
  ) {
    this.random = seededRandom(params.seed ?? Math.floor(Math.random() * 2 ** 32));
    if (params.repetitionPenalty !== 1) for (const t of promptTokens) this.seen.add(t);
  }

  /** Records a generated token for the frequency/presence penalties. */
  observe(token: number): void {
    this.counts.set(token, (this.counts.get(token) ?? 0) + 1);
    if (this.params.repetitionPenalty !== 1) this.seen.add(token);
  }

  /**
   * Samples a token; `banned` tokens (EOS before min_tokens) are never chosen, nor tokens whose bit
   * is clear in `allowed` (a grammar's mask: bit `t & 31` of word `t >> 5` for token t).
   */
  sample(logits: Float32Array, banned: readonly number[] = [], allowed: Int32Array | null = null): number {
    const p = this.params;
    const penalised =
      ((p.frequencyPenalty || p.presencePenalty) && this.counts.size) || this.seen.size || banned.length || allowed !== null;
    // The logits stay untouched (logprobs report the raw distribution): penalties work on a copy.
    const scores = penalised ? logits.slice() : logits;
    if (p.frequencyPenalty || p.presencePenalty)
      for (const [tok, n] of this.counts) scores[tok]! -= p.frequencyPenalty * n + p.presencePenalty;
    // transformers' rule: a seen token's positive score is divided by the penalty, a negative one multiplied.
    for (const tok of this.seen) scores[tok] = scores[tok]! > 0 ? scores[tok]! / p.repetitionPenalty : scores[tok]! * p.repetitionPenalty;
    for (const tok of banned) scores[tok] = -Infinity;
    if (allowed) applyMask(scores, allowed);
    if (p.temperature <= 0) return argmax(scores);
    const V = scores.length;
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (scores[i]! > max) max = scores[i]!;
    // probs ∝ exp((score - max) / T), over the candidates top-k and top-p keep.
    let candidates: Int32Array | null = null;
    if (p.topK > 0 && p.topK < V) candidates = topKIndices(scores, p.topK);
    const probs = new Float64Array(candidates ? candidates.length : V);
    let sum = 0;
    for (let j = 0; j < probs.length; j++) {
      const i = candidates ? candidates[j]! : j;
      sum += probs[j] = Math.exp((scores[i]! - max) / p.temperature);
    }
    if (p.topP < 1) {
      const order = Int32Array.from(probs.keys()).sort((a, b) => probs[b]! - probs[a]!);
      let kept = 0;
      let mass = 0;
      while (kept < order.length && mass < p.topP * sum) mass += probs[order[kept++]!]!;
      for (let j = kept; j < order.length; j++) probs[order[j]!] = 0;
      sum = mass;
    }
    let u = this.random() * sum;
    let last = 0;
    for (let j = 0; j < probs.length; j++) {
      if (probs[j] === 0) continue;
      last = j;
      u -= probs[j]!;
      if (u < 0) break;
    }
    return candidates ? candidates[last]! : last;
  }
}

/** scores[t] = -∞ wherever bit t of the mask is clear (32 tokens per word; a full word is skipped). */
function applyMask(scores: Float32Array, allowed: Int32Array): void {
  const V = scores.length;
  for (let w = 0; w < allowed.length; w++) {
    const bits = allowed[w]!;
    if (bits === -1) continue;
    const end = Math.min(V, (w + 1) * 32);
    for (let t = w * 32; t < end; t++) if (!((bits >>> (t & 31)) & 1)) scores[t] = -Infinity;
  }
}

export function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

function topKIndices(a: Float32Array, k: number): Int32Array {
  return Int32Array.from(a.keys())
    .sort((x, y) => a[y]! - a[x]!)
    .subarray(0, k);
}
