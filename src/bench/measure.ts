import { decodeInputs, type Engine, type GenerateRequest } from '../engine/index.js';
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

export interface DecodeStepCost {
  /** Median time of one step. */
  ms: number;
  /** Bytes fed to the step graph from the host, and returned to it, per step (host↔device on a GPU provider). */
  to_device_bytes: number;
  from_device_bytes: number;
}

/**
 * One decode step for `slots.length` rows that each have `cached` positions in the engine's cache
 * (a synthetic cache: the cost of a step does not depend on the values it holds): its median time
 * and the bytes it moves between host and device. The scheduler must be idle.
 */
export async function decodeStepCost(engine: Engine, slots: number[], cached: number, repeats = 5): Promise<DecodeStepCost> {
  const { vocabSize } = engine.model.dims;
  const kv = engine.cache;
  const rows = slots.map(() => kv.acquireRow());
  kv.reserve(cached + repeats + 2);
  for (const row of rows) kv.assumeWritten(row, cached);
  const step = () =>
    engine.forward({
      ...decodeInputs(rows.map((row, r) => ({ token: (r * 7919) % vocabSize, cached: kv.length(row) }))),
      adapters: slots.map(singleSlot),
      rows,
    });
  const times: number[] = [];
  try {
    await step();
    const before = { ...engine.transfers };
    for (let i = 0; i < repeats; i++) {
      const start = performance.now();
      await step();
      times.push(performance.now() - start);
    }
    const after = engine.transfers;
    return {
      ms: +percentiles(times).p50.toFixed(1),
      to_device_bytes: Math.round((after.toDevice - before.toDevice) / repeats),
      from_device_bytes: Math.round((after.fromDevice - before.fromDevice) / repeats),
    };
  } finally {
    for (const row of rows) kv.releaseRow(row);
  }
}

/**
 * `decodeStepCost` at each cached length, in interleaved rounds, keeping each length's fastest round.
 * A transient on the machine (a collection, threads still busy after the previous workload) only
 * ever adds time; measured back to back, one such once landed on the 64-position step alone and
 * made it slower than the 512-position one.
 */
export async function decodeStepCosts(engine: Engine, slots: number[], lengths: readonly number[], rounds = 3): Promise<DecodeStepCost[]> {
  const best: DecodeStepCost[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const [i, cached] of lengths.entries()) {
      const cost = await decodeStepCost(engine, slots, cached);
      if (!best[i] || cost.ms < best[i]!.ms) best[i] = cost;
    }
  }
  return best;
}
