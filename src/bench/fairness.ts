/**
 * Fairness across tenants (issue 19), on one engine whose slots hold adapters:
 *   flood     tenant A: `floodStreams` streams × `floodTokens` tokens over two adapters, alone and
 *             then while tenant B sends one `quietTokens`-token request at a time on a third
 *   weighted  two tenants at weights 1:3, each with a backlog of requests, sharing the batch
 * The summary keys are ratios within the run: B's time to first token in flood decode steps
 * (B's TTFT p50 ÷ the flood's inter-token latency p50), A's throughput with B present ÷ alone,
 * and the weighted tenants' largest distance from their share of the generated tokens.
 */
import type { Engine, GenerateRequest } from '../engine/index.js';
import { percentiles, runRequests, type Latency, type Percentiles, type Throughput } from './measure.js';

export interface FairnessSizes {
  floodStreams: number;
  floodTokens: number;
  quietTokens: number;
  /** Requests per tenant in the weighted run, and tokens each. */
  weightedRequests: number;
  weightedTokens: number;
}

export interface FairnessResult {
  sizes: FairnessSizes;
  flood_alone: Throughput & Latency;
  flood_with_quiet: Throughput & Latency;
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
  const flood = () => Array.from({ length: sizes.floodStreams }, (_, i) => request(prompt(i), sizes.floodTokens, slots[i % 2]!, 'flood'));
  const floodAlone = await runRequests(engine, flood(), true);

  const preempted = () => engine.scheduler.tenants().find((t) => t.tenant === 'flood')?.preemptions ?? 0;
  const preemptionsBefore = preempted();
  const decodeStart = engine.scheduler.steps.decode;
  let floodDone = false;
  const floodRun = runRequests(engine, flood(), true).finally(() => (floodDone = true));
  // B starts once the flood is decoding with every row busy.
  while (engine.scheduler.steps.decode < decodeStart + 2 && !floodDone) await new Promise((r) => setImmediate(r));
  const ttft: number[] = [];
  for (let i = 0; !floodDone; i++) {
    const submitted = performance.now();
    let first = 0;
    await engine.generate({
      ...request(prompt(1000 + i), sizes.quietTokens, slots[2], 'quiet'),
      onToken: () => (first ||= performance.now()),
    }).result;
    if (!floodDone) ttft.push(first - submitted);
  }
  const floodWithQuiet = await floodRun;
  const preemptions = preempted() - preemptionsBefore;

  const weighted = await weightedRun(engine, prompt, slots, sizes);
  const quietTtft = percentiles(ttft);
  return {
    sizes,
    flood_alone: floodAlone,
    flood_with_quiet: floodWithQuiet,
    quiet: { requests: ttft.length, ttft_ms: quietTtft },
    preemptions,
    weighted,
    summary: {
      quiet_tenant_ttft_steps: +(quietTtft.p50 / floodWithQuiet.itl_ms.p50).toFixed(2),
      flood_throughput_vs_solo: +(floodWithQuiet.tokens_per_s / floodAlone.tokens_per_s).toFixed(3),
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
