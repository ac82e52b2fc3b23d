import { decodeInputs, type Engine, type GenerateRequest, type PastView } from '../engine/index.js';
import { singleSlot } from '../lora/index.js';

export interface Throughput {
  tokens: number;
  seconds: number;
  tokens_per_s: number;
}

export interface Latency {
  /** Submit → first generated token, ms. */
  ttft_ms: Percentiles;
  /** Gaps between a request's consecutive tokens, ms. */
  itl_ms: Percentiles;
}

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
}

export function percentiles(samples: number[]): Percentiles {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => +(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0).toFixed(1);
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99) };
}

export const throughput = (tokens: number, seconds: number): Throughput => ({
  tokens,
  seconds: +seconds.toFixed(3),
  tokens_per_s: +(tokens / seconds).toFixed(2),
});

/**
 * Runs requests all at once (`concurrent`) or one after another, recording every token's arrival.
 * `before(i)` runs ahead of request i and is timed with it (the serial adapter switch).
 */
export async function runRequests(
  engine: Engine,
  requests: GenerateRequest[],
  concurrent: boolean,
  before?: (i: number) => void,
): Promise<Throughput & Latency> {
  const ttft: number[] = [];
  const itl: number[] = [];
  let tokens = 0;
  const one = async (req: GenerateRequest, i: number) => {
    before?.(i);
    const submitted = performance.now();
    let last = submitted;
    const result = await engine.generate({
      ...req,
      onToken: () => {
        const now = performance.now();
        (last === submitted ? ttft : itl).push(now - last);
        last = now;
      },
    }).result;
    tokens += result.completionTokens;
  };
  const start = performance.now();
  if (concurrent) await Promise.all(requests.map(one));
  else for (const [i, r] of requests.entries()) await one(r, i);
  return { ...throughput(tokens, (performance.now() - start) / 1000), ttft_ms: percentiles(ttft), itl_ms: percentiles(itl) };
}

/**
 * Median time of one decode step for `slots.length` rows that each have `cached` positions in the
 * cache (a synthetic cache: the cost of a step does not depend on the values it holds).
 */
export async function decodeStepMs(engine: Engine, slots: number[], cached: number, repeats = 5): Promise<number> {
  const { layers, kvHeads, headDim, vocabSize } = engine.model.dims;
  const batch = slots.length;
  const floats = batch * kvHeads * cached * headDim;
  const fill = () => Array.from({ length: layers }, () => new Float32Array(floats).fill(0.01));
  const past: PastView = { length: cached, keys: fill(), values: fill() };
  const tokens = decodeInputs(
    slots.map((_, r) => ({ token: (r * 7919) % vocabSize, cached })),
    cached,
  );
  const input = { ...tokens, adapters: slots.map(singleSlot), past };
  await engine.forward(input);
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    await engine.forward(input);
    times.push(performance.now() - start);
  }
  return +percentiles(times).p50.toFixed(1);
}
