/**
 * The prefix cache (issue 20), on one engine whose slots hold adapters:
 *   ttft   batch 1: a `system`-token system prompt already cached + `tail` new tokens, against the
 *          same prompt read whole (time to first token, median of `repeats`)
 *   chat   `conversations` conversations of `turns` turns over the adapters, each adapter's
 *          conversations sharing its system prompt; each turn's prompt is the conversation so
 *          far (earlier questions and answers) and a new question: generated tokens/s with the
 *          cache against without
 * Summary keys: `prefix_ttft_ratio` (cached ÷ uncached TTFT) and `prefix_chat_throughput_gain`
 * (tokens/s with ÷ without).
 */
import type { Engine } from '../engine/index.js';
import { rng } from '../util/rng.js';
import { percentiles, throughput, type Throughput } from './measure.js';

export interface PrefixSizes {
  system: number;
  tail: number;
  repeats: number;
  conversations: number;
  turns: number;
  /** Tokens of each question, and of each answer (generated through EOS). */
  question: number;
  answer: number;
}

export interface PrefixResult {
  sizes: PrefixSizes;
  ttft_ms: { cached: number; uncached: number };
  cached_tokens: number;
  chat: { cached: Throughput & { cached_tokens: number; prompt_tokens: number }; uncached: Throughput };
  summary: { prefix_ttft_ratio: number; prefix_chat_throughput_gain: number };
}

/** `slots`: filled adapter slots; conversation i runs on `slots[i % slots.length]`. */
export async function prefixRun(engine: Engine, slots: number[], sizes: PrefixSizes): Promise<PrefixResult> {
  const r = rng(20);
  const vocab = engine.model.dims.vocabSize;
  const random = (n: number) => Array.from({ length: n }, () => Math.floor(r.next() * (vocab - 1)));
  const keyOf = (slot: number) => `bench-adapter-${slot}`;
  engine.scheduler.prefixes?.clear();

  const firstToken = async (promptTokens: number[], prefixKey: string | undefined) => {
    const start = performance.now();
    let at = 0;
    const result = await engine.generate({
      promptTokens,
      slot: slots[0],
      prefixKey,
      maxTokens: 1,
      ignoreEos: true,
      sampling: { temperature: 0 },
      onToken: () => (at ||= performance.now()),
    }).result;
    await engine.scheduler.idle();
    return { ms: at - start, cached: result.cachedTokens };
  };
  const system = random(sizes.system);
  await firstToken([...system, ...random(sizes.tail)], keyOf(slots[0]!));
  const cached: number[] = [];
  const uncached: number[] = [];
  let cachedTokens = 0;
  for (let i = 0; i < sizes.repeats; i++) {
    const prompt = [...system, ...random(sizes.tail)];
    const hit = await firstToken(prompt, keyOf(slots[0]!));
    cached.push(hit.ms);
    cachedTokens = hit.cached;
    uncached.push((await firstToken(prompt, undefined)).ms);
  }
  const ttft = { cached: percentiles(cached).p50, uncached: percentiles(uncached).p50 };

  const systems = slots.map(() => random(sizes.system));
  const questions = Array.from({ length: sizes.conversations }, () => Array.from({ length: sizes.turns }, () => random(sizes.question)));
  const chat = async (useCache: boolean) => {
    engine.scheduler.prefixes?.clear();
    let tokens = 0;
    let prompts = 0;
    let hits = 0;
    const conversation = async (c: number) => {
      const slot = slots[c % slots.length]!;
      const history = [...systems[c % slots.length]!];
      for (const question of questions[c]!) {
        history.push(...question);
        const answer: number[] = [];
        const result = await engine.generate({
          promptTokens: [...history],
          slot,
          prefixKey: useCache ? keyOf(slot) : undefined,
          maxTokens: sizes.answer,
          ignoreEos: true,
          sampling: { temperature: 0 },
          onToken: (t) => answer.push(t),
        }).result;
        history.push(...answer);
        tokens += result.completionTokens;
        prompts += result.promptTokens;
        hits += result.cachedTokens;
      }
    };
    const start = performance.now();
    await Promise.all(questions.map((_, c) => conversation(c)));
    return { ...throughput(tokens, (performance.now() - start) / 1000), cached_tokens: hits, prompt_tokens: prompts };
  };
  const without = await chat(false);
  const withCache = await chat(true);
  engine.scheduler.prefixes?.clear();
  return {
    sizes,
    ttft_ms: ttft,
    cached_tokens: cachedTokens,
    chat: { cached: withCache, uncached: without },
    summary: {
      prefix_ttft_ratio: +(ttft.cached / ttft.uncached).toFixed(3),
      prefix_chat_throughput_gain: +(withCache.tokens_per_s / without.tokens_per_s).toFixed(3),
    },
  };
}
