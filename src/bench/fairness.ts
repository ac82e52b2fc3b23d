/**
 * Fairness across tenants (issue 19), on one engine whose slots hold adapters:
 *   flood     tenant A: `floodStreams` clients over two adapters, each sending its next
 *             `floodTokens`-token request as soon as the last ends, alone and while tenant B sends
 *             `quietRequests` `quietTokens`-token requests one at a time on a third adapter
 *   weighted  two tenants at weights 1:3, each with a backlog of requests, sharing the batch
 * The summary keys are ratios within the run: B's time to first token in flood decode steps
 * (B's TTFT p50 ÷ the mean step time of the flooded batch), A's steady rate while B sends ÷ its rate
 * alone over a window as long,
 * and the weighted tenants' largest distance from their share of the generated tokens.
 */
import type { Engine, GenerateRequest } from '../engine/index.js';
import { percentiles, runRequests, throughput, type Latency, type Percentiles, type Throughput } from './measure.js';

export interface FairnessSizes {
  floodStreams: number;
  floodTokens: number;
  quietTokens: number;
  /** B's requests, one after another, while A floods. */
  quietRequests: number;
  /** Requests per tenant in the weighted run, and tokens each. */
  weightedRequests: number;
  weightedTokens: number;
}

export interface FairnessResult {
  sizes: FairnessSizes;
  flood_alone: Throughput & Latency;
  /** A's clients in steady state: its rate while B sends its requests, and alone over as long a window. */
  flood_steady: { alone: Throughput; with_quiet: Throughput; window_ms: number; step_ms: number };
  quiet: { requests: number; ttft_ms: Percentiles };
  preemptions: number;
  weighted: { weights: [number, number]; tokens: [number, number]; share: number };
  summary: { quiet_tenant_ttft_steps: number; flood_throughput_vs_solo: number; weighted_share_error: number };
}

const request = (prompt: number[], maxTokens: number, slot: number, tenant: string): GenerateRequest => ({
  promptTokens: prompt,
  slot,
  maxTokens,
  ignoreEos: true,
  sampling: { temperature: 0 },
  tenant,
});

/** `prompts` gives each request its prompt (cycled); `slots` are three filled adapter slots. */
export async function fairnessRun(
  engine: Engine,
  prompts: number[][],
  slots: [number, number, number],
  sizes: FairnessSizes,
): Promise<FairnessResult> {
  const prompt = (i: number) => prompts[i % prompts.length]!;
  const floodRequest = (i: number) => request(prompt(i), sizes.floodTokens, slots[i % 2]!, 'flood');
  /**
   * Tenant A's flood as its clients run it: `floodStreams` clients, each sending its next request as
   * soon as the last one ends, so the batch stays full (no wave of requests ending together). Once
   * every row decodes, `during` runs; A's tokens are counted while it does. Returns A's rate then.
   */
  const floodRate = async (during: () => Promise<void>): Promise<{ rate: Throughput; ms: number; steps: number }> => {
    let stop = false;
    let counting = false;
    let tokens = 0;
    const onToken = () => counting && tokens++;
    const clients = Promise.all(
      Array.from({ length: sizes.floodStreams }, async (_, client) => {
        for (let i = client; !stop; i += sizes.floodStreams) await engine.generate({ ...floodRequest(i), onToken }).result;
      }),
    );
    const steps = () => engine.scheduler.steps.decode + engine.scheduler.steps.prefill;
    const decodeStart = engine.scheduler.steps.decode;
    while (engine.scheduler.steps.decode < decodeStart + 2) await new Promise((r) => setImmediate(r));
    const [start, stepsBefore] = [performance.now(), steps()];
    counting = true;
    await during();
    counting = false;
    const ms = performance.now() - start;
    const stepped = steps() - stepsBefore;
    stop = true;
    await clients;
    return { rate: throughput(tokens, ms / 1000), ms, steps: stepped };
  };

  // A alone once (the usual latency figures of a full batch).
  const floodAlone = await runRequests(
    engine,
    Array.from({ length: sizes.floodStreams }, (_, i) => floodRequest(i)),
    true,
  );
  const preempted = () => engine.scheduler.tenants().find((t) => t.tenant === 'flood')?.preemptions ?? 0;
  const preemptionsBefore = preempted();
  // A while B sends `quietRequests` requests one after another.
  const ttft: number[] = [];
  const withQuiet = await floodRate(async () => {
    for (let i = 0; i < sizes.quietRequests; i++) {
      const submitted = performance.now();
      let first = 0;
      await engine.generate({
        ...request(prompt(1000 + i), sizes.quietTokens, slots[2], 'quiet'),
        onToken: () => (first ||= performance.now()),
      }).result;
      ttft.push(first - submitted);
    }
  });
  const preemptions = preempted() - preemptionsBefore;
  // A alone over a window as long.
  const solo = await floodRate(() => new Promise((r) => setTimeout(r, withQuiet.ms)));
  const windowMs = withQuiet.ms;
  const stepMs = windowMs / withQuiet.steps;
  const [floodWithQuiet, floodSolo] = [withQuiet.rate, solo.rate];

  const weighted = await weightedRun(engine, prompt, slots, sizes);
  const quietTtft = percentiles(ttft);
  return {
    sizes,
    flood_alone: floodAlone,
    flood_steady: { alone: floodSolo, with_quiet: floodWithQuiet, window_ms: Math.round(windowMs), step_ms: +stepMs.toFixed(1) },
    quiet: { requests: ttft.length, ttft_ms: quietTtft },
    preemptions,
    weighted,
    summary: {
      quiet_tenant_ttft_steps: +(quietTtft.p50 / stepMs).toFixed(2),
      flood_throughput_vs_solo: +(floodWithQuiet.tokens_per_s / floodSolo.tokens_per_s).toFixed(3),
      weighted_share_error: +Math.abs(weighted.share - 0.25).toFixed(3),
    },
  };
}

/**
 * Two tenants at weights 1:3 submit their backlogs at once; tokens count while both are backlogged,
 * that is until the first of them has had every one of its requests admitted (its last first token).
 */
async function weightedRun(engine: Engine, prompt: (i: number) => number[], slots: [number, number, number], sizes: FairnessSizes) {
  const weights: [number, number] = [1, 3];
  const tenants = ['share-1', 'share-3'];
  tenants.forEach((t, i) => engine.scheduler.setTenantWeight(t, weights[i]!));
  const tokens = [0, 0];
  const started = [0, 0];
  let backlogged = true;
  const gens = tenants.flatMap((tenant, k) =>
    Array.from({ length: sizes.weightedRequests }, (_, i) => {
      let first = true;
      return engine.generate({
        ...request(prompt(2000 + i), sizes.weightedTokens, slots[k]!, tenant),
        onToken: () => {
          if (!backlogged) return;
          tokens[k]!++;
          if (first && ++started[k]! === sizes.weightedRequests) backlogged = false;
          first = false;
        },
      });
    }),
  );
  await Promise.all(gens.map((g) => g.result));
  return { weights, tokens: tokens as [number, number], share: +(tokens[0]! / (tokens[0]! + tokens[1]!)).toFixed(4) };
}
