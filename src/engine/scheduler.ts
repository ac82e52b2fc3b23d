/**
 * Continuous batching.
 *
 * Contract:
 * - One `step()` is one forward pass: either a prefill step (the next prompt chunk of sequences
 *   still reading their prompt) or one decode token for every decoding row.
 * - A waiting request is admitted when a row is free (at most `maxBatch` rows); which one is the
 *   fair queue's choice across tenants (fair-queue.ts). When every row is busy, a tenant below its
 *   share may take a row: the running request it takes it from is paused, keeping its cache row and
 *   length but no longer stepped (a decode step feeds its row as idle), and resumes later where it
 *   stopped, producing exactly the tokens it would have. At most `maxPaused` rows are paused, so the
 *   cache holds at most `maxBatch + maxPaused` rows. Prompts are read in
 *   chunks of at most `prefillChunk` tokens, and while rows are decoding, prefill and decode steps
 *   alternate: a long prompt delays running streams by at most one chunk's step, and a new request
 *   waits at most one decode step for its first chunk. A prefill step is bounded by `maxBatchTokens`
 *   padded tokens.
 * - Requests join and leave only between steps. A finished or cancelled request keeps its row until
 *   the start of the next step, which frees it (and calls its `onDone`, releasing its adapter pin).
 * - Each row carries its own adapters (none = base model, one, or a weighted mix), so rows of any
 *   adapters share a step.
 * - n choices of one prompt read it once: when the first has read its prompt, each other choice
 *   takes a free row holding a copy of that row's cache and samples from the same logits.
 * - With a prefix cache (prefix-cache.ts), a request with a `prefixKey` that takes a fresh row first
 *   copies the longest cached run of its prompt's blocks into it and reads only the rest; when it
 *   ends (not on an error), the blocks its row holds beyond those cached are kept. A request that
 *   asked for prompt logprobs reads its whole prompt (the cache keeps keys/values, not logits).
 * - Logits are computed at each row's last position only, except for a request that asked for
 *   prompt logprobs: its prefill chunks get logits at every position.
 * - A failed forward pass fails the requests that were in it and nothing else.
 * - A row with an output grammar samples only the tokens the grammar allows; its mask is computed
 *   on this thread while the forward pass runs on ONNX Runtime's, and EOS is allowed only once the
 *   grammar is complete.
 */
import { EngineError } from '../errors.js';
import type { AdapterMix } from '../lora/index.js';
import { DEFAULT_TENANT, FairQueue, type TenantService } from './fair-queue.js';
import { Generation, type FinishReason } from './generation.js';
import type { KvRows } from './kv-cache.js';
import { tokenLogprob } from './logprobs.js';
import type { PrefixCache } from './prefix-cache.js';
import { Sequence, type SequenceRequest } from './sequence.js';
import { choosePrefill, decodeInputs, prefillInputs, type StepTokens } from './step-inputs.js';

export type { SequenceRequest } from './sequence.js';

export interface ForwardInput extends StepTokens {
  /** The adapters of each row, with weights ([] = base model). */
  adapters: AdapterMix[];
  /**
   * The cache row of each batch row. The forward pass reads each row's cached positions and
   * writes its new tokens' keys/values after them (its `counts`), advancing the row's length.
   */
  rows: number[];
}

export interface ForwardOutput {
  /** [M, vocab]: one row per entry of the input's `logitRows`. */
  logits: Float32Array;
}

export type Forward = (input: ForwardInput) => Promise<ForwardOutput>;

export interface SchedulerLimits {
  maxBatch: number;
  maxBatchTokens: number;
  /** Longest sequence (prompt + generated) a row may reach. */
  maxContext: number;
  /** Most prompt tokens of one sequence read in one step. */
  prefillChunk: number;
  /** Most running rows paused at once for another tenant (default: a quarter of maxBatch, at least 1). */
  maxPaused?: number;
}

export class Scheduler {
  /** Sequences without a row, and paused ones that keep theirs. */
  private readonly waiting: FairQueue<Sequence>;
  /** Sequences that own a cache row and are stepped, in admission order. */
  private active: Sequence[] = [];
  private looping = false;
  private lastWasPrefill = false;
  private nextId = 0;
  private idleWaiters: Array<() => void> = [];
  /** Forward passes run so far, by kind (for tests and metrics). */
  readonly steps = { prefill: 0, decode: 0 };
  /** Time spent computing grammar masks on this thread (overlapping the forward passes), in ms. */
  maskMs = 0;
  /**
   * Forward passes that failed in a row, and the last one's error: a provider fault fails only
   * the requests of its step, and readiness reports it until a pass succeeds again.
   */
  readonly failures = { consecutive: 0, last: null as Error | null };
  private readonly eosList: number[];

  /** `kv` is the cache the forward pass reads and writes; the scheduler owns its rows and capacity. */
  constructor(
    private readonly forward: Forward,
    private readonly kv: KvRows,
    readonly limits: SchedulerLimits,
    readonly eosTokenIds: ReadonlySet<number>,
    private readonly decode: (ids: number[]) => string,
    /** Cached prompt prefixes, or null to read every prompt whole. */
    readonly prefixes: PrefixCache | null = null,
  ) {
    this.eosList = [...eosTokenIds];
    this.waiting = new FairQueue(
      (s) => ({
        tenant: s.req.tenant ?? DEFAULT_TENANT,
        priority: s.req.priority ?? 0,
        promptLeft: s.req.promptTokens.length - s.prefilled,
        outputLeft: s.req.maxTokens - s.generated.length,
      }),
      () => this.active,
    );
  }

  /** A tenant's share of the rows under contention, relative to the others' (default 1). */
  setTenantWeight(tenant: string, weight: number): void {
    this.waiting.setWeight(tenant, weight);
  }

  /** Each tenant's service so far (tokens, preemptions) and its fair-share counter. */
  tenants(): TenantService[] {
    return this.waiting.service();
  }

  submit(req: SequenceRequest): Generation {
    return this.submitChoices(req, 1)[0]!;
  }

  /**
   * `n` choices of one prompt: the prompt is read once, then its cache row is copied into a row per
   * further choice (a choice that finds no free row then reads the prompt itself). With a seed,
   * choice i samples with seed + i.
   */
  submitChoices(req: SequenceRequest, n: number): Generation[] {
    const seqs = Array.from({ length: n }, (_, i) => {
      const gen = new Generation(`seq-${this.nextId++}`, () => this.kick());
      const sampling = req.sampling.seed === null ? req.sampling : { ...req.sampling, seed: req.sampling.seed + i };
      const seq = new Sequence({ ...req, sampling }, gen, this.decode);
      gen.promptLogprobs = seq.promptLogprobs;
      if (req.signal?.aborted) gen.cancel();
      req.signal?.addEventListener('abort', () => gen.cancel(), { once: true });
      return seq;
    });
    seqs[0]!.forks = seqs.slice(1);
    this.waiting.push(seqs[0]!);
    this.kick();
    return seqs.map((s) => s.gen);
  }

  get stats(): { waiting: number; running: number; paused: number; kvFloats: number; kvPositions: number; kvCapacity: number } {
    const paused = this.paused();
    const kvPositions = [...this.active, ...paused].reduce((sum, s) => sum + this.kv.length(s.row), 0);
    return {
      waiting: this.waiting.length,
      running: this.active.length,
      paused: paused.length,
      kvFloats: this.kv.floats,
      kvPositions,
      kvCapacity: this.kv.capacity,
    };
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (!this.looping && !this.waiting.length && !this.active.length) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private kick(): void {
    if (this.looping) return;
    this.looping = true;
    void (async () => {
      try {
        for (;;) {
          let more: boolean;
          try {
            more = await this.step();
          } catch (cause) {
            // A fault outside the forward pass (cache bookkeeping, a bug) leaves the rows' state
            // unknown: fail the running requests rather than hang them, and carry on with the queue.
            const err = new EngineError('the engine step failed', { cause });
            for (const s of this.active) this.fail(s, err);
            more = true;
          }
          if (!more) break;
          await new Promise((r) => setImmediate(r));
        }
      } finally {
        this.looping = false;
        for (const w of this.idleWaiters.splice(0)) w();
      }
    })();
  }

  /** One forward pass (see the contract above). Returns false when there was nothing to do. */
  async step(): Promise<boolean> {
    await this.releaseFinished();
    await this.reusePrefixes(this.admit());
    const reading = this.active.filter((s) => !s.decoding);
    const decoding = this.active.some((s) => s.decoding);
    const before = this.progress();
    if (reading.length && !(decoding && this.lastWasPrefill)) {
      this.lastWasPrefill = true;
      await this.prefillStep(reading);
      this.charge(before);
      return true;
    }
    this.lastWasPrefill = false;
    if (decoding) {
      await this.decodeStep();
      this.charge(before);
      return true;
    }
    return false;
  }

  /** Fills free rows from the fair queue; with none free, pauses rows for tenants owed one (see the contract). Returns those given a fresh row. */
  private admit(): Sequence[] {
    const fresh: Sequence[] = [];
    const maxPaused = this.limits.maxPaused ?? Math.max(1, Math.floor(this.limits.maxBatch / 4));
    let paused = this.paused().length;
    // Each swap moves a row towards a tenant's share, so few happen; the bound only guards the loop.
    let swaps = 0;
    for (;;) {
      let s: Sequence | undefined;
      if (this.active.length < this.limits.maxBatch) s = this.waiting.admit();
      else if (paused < maxPaused && swaps < maxPaused) {
        const swap = this.waiting.preempt(this.limits.maxBatch);
        if (swap) {
          this.active.splice(this.active.indexOf(swap.pause), 1);
          s = swap.admit;
          paused++;
          swaps++;
        }
      }
      if (!s) return fresh;
      // A paused sequence resumes on the row it kept.
      if (s.row < 0) {
        s.row = this.kv.acquireRow();
        fresh.push(s);
      } else paused--;
      this.active.push(s);
    }
  }

  /** Copies the cached part of each fresh row's prompt into its row (see the contract); charged as cached. */
  private async reusePrefixes(fresh: Sequence[]): Promise<void> {
    if (!this.prefixes) return;
    for (const s of fresh) {
      const key = s.req.prefixKey;
      if (key === undefined || s.promptLogprobs || s.prefilled > 0) continue;
      const prompt = s.req.promptTokens;
      const hit = this.prefixes.lookup(key, prompt, prompt.length - 1);
      if (!hit) continue;
      try {
        this.kv.reserve(hit.positions);
        await this.kv.restore(s.row, hit.placements);
      } catch (cause) {
        // Only this row's contents are in doubt: it fails alone, and its row is freed at the next step.
        this.fail(s, new EngineError('copying a cached prefix failed', { cause }));
        continue;
      } finally {
        hit.release();
      }
      s.prefilled = s.cachedTokens = hit.positions;
      this.waiting.charge(s.req.tenant ?? DEFAULT_TENANT, { prompt: 0, cached: hit.positions, completion: 0 });
    }
  }

  /** Keeps the blocks of `s`'s row that the prefix cache lacks, before the row is freed. */
  private async keepPrefix(s: Sequence): Promise<void> {
    const key = s.req.prefixKey;
    if (!this.prefixes || key === undefined || s.failed) return;
    // The row holds the prompt and every generated token but the last (not yet fed back).
    const tokens = [...s.req.promptTokens, ...s.generated].slice(0, this.kv.length(s.row));
    const plan = this.prefixes.plan(key, tokens);
    if (!plan) return;
    try {
      this.prefixes.add(plan, await this.kv.snapshot(s.row, plan.start, plan.count));
    } catch {
      // The request has already ended well; a prefix that could not be kept is only a later miss.
    }
  }

  private paused(): Sequence[] {
    return [...this.waiting.items()].filter((s) => s.row >= 0);
  }

  /** Each active sequence's prompt tokens cached and tokens generated, before a step. */
  private progress(): Map<Sequence, { prefilled: number; generated: number }> {
    return new Map(this.active.map((s) => [s, { prefilled: s.prefilled, generated: s.generated.length }]));
  }

  /** Charges each tenant for the step just run: a choice that joined by copying a row got its prompt cached. */
  private charge(before: Map<Sequence, { prefilled: number; generated: number }>): void {
    for (const s of this.active) {
      const was = before.get(s);
      const read = s.prefilled - (was?.prefilled ?? 0);
      this.waiting.charge(s.req.tenant ?? DEFAULT_TENANT, {
        prompt: was ? read : 0,
        cached: was ? 0 : read,
        completion: s.generated.length - (was?.generated ?? 0),
      });
    }
  }

  private async releaseFinished(): Promise<void> {
    for (const s of this.waiting.removeWhere((w) => w.gen.cancelled || w.finished)) {
      this.finish(s, 'cancelled');
      if (s.row >= 0) this.kv.releaseRow(s.row);
    }
    for (const s of this.active) if (s.gen.cancelled) this.finish(s, 'cancelled');
    const done = this.active.filter((s) => s.finished);
    this.active = this.active.filter((s) => !s.finished);
    for (const s of done) {
      await this.keepPrefix(s);
      this.kv.releaseRow(s.row);
    }
  }

  private async prefillStep(reading: Sequence[]): Promise<void> {
    const counts = choosePrefill(
      reading.map((s) => s.req.promptTokens.length - s.prefilled),
      this.limits.prefillChunk,
      this.limits.maxBatchTokens,
    );
    const chosen = reading.slice(0, counts.length);
    const rows = chosen.map((s) => s.row);
    this.kv.reserve(Math.max(...chosen.map((s, i) => s.prefilled + counts[i]!)));
    const tokens = prefillInputs(
      chosen.map((s, i) => ({
        tokens: s.req.promptTokens,
        from: s.prefilled,
        count: counts[i]!,
        cached: s.prefilled,
        allLogits: s.promptLogprobs !== null,
      })),
    );
    this.steps.prefill++;
    const out = await this.run(chosen, { ...tokens, adapters: chosen.map((s) => s.req.adapters), rows }, [
      ...chosen,
      ...chosen.flatMap((s) => s.forks),
    ]);
    if (!out) return;
    const V = out.logits.length / tokens.logitRows.length;
    const lastLogits = chosen.map((s, i) => {
      const start = tokens.logitStart[i]!;
      if (!s.promptLogprobs) return start;
      // Logits at prompt position p score prompt token p + 1; the last position's score the first generated token.
      const prompt = s.req.promptTokens;
      for (let j = 0; j < counts[i]!; j++) {
        const next = s.prefilled + j + 1;
        if (next < prompt.length)
          s.promptLogprobs.push(
            tokenLogprob(out.logits.subarray((start + j) * V, (start + j + 1) * V), prompt[next]!, s.req.logprobs ?? 0),
          );
      }
      return start + counts[i]! - 1;
    });
    chosen.forEach((s, i) => (s.prefilled += counts[i]!));
    const forked = chosen.map((s) => this.fork(s));
    this.sampleAll(
      chosen,
      out.logits,
      V,
      (i) => lastLogits[i]!,
      (s) => s.decoding,
    );
    forked.forEach((forks, i) =>
      this.sampleAll(
        forks,
        out.logits,
        V,
        () => lastLogits[i]!,
        () => true,
      ),
    );
  }

  /** Once `s` has read its prompt, gives each of its forks a copy of its cache row (see `submitChoices`). */
  private fork(s: Sequence): Sequence[] {
    if (!s.decoding || !s.forks.length) return [];
    const admitted: Sequence[] = [];
    for (const f of s.forks.splice(0)) {
      if (f.gen.cancelled || this.active.length >= this.limits.maxBatch) {
        this.waiting.push(f);
        continue;
      }
      f.row = this.kv.acquireRow();
      this.kv.reserve(s.prefilled);
      this.kv.copyPrefix(s.row, f.row, s.prefilled);
      f.prefilled = f.cachedTokens = s.prefilled;
      if (s.promptLogprobs) f.promptLogprobs!.splice(0, Infinity, ...s.promptLogprobs);
      this.active.push(f);
      admitted.push(f);
    }
    return admitted;
  }

  private async decodeStep(): Promise<void> {
    const span = this.kv.span;
    const byRow: Array<Sequence | null> = Array.from({ length: span }, () => null);
    for (const s of this.active) if (s.decoding) byRow[s.row] = s;
    const stepping = this.active.filter((s) => s.decoding);
    this.kv.reserve(Math.max(...stepping.map((s) => this.kv.length(s.row) + 1)));
    const rows = byRow.map((_, r) => r);
    const tokens = decodeInputs(byRow.map((s) => (s ? { token: s.lastToken, cached: this.kv.length(s.row) } : null)));
    this.steps.decode++;
    const out = await this.run(stepping, { ...tokens, adapters: byRow.map((s) => s?.req.adapters ?? []), rows }, stepping);
    if (!out) return;
    // Stepping rows' logits come back in row order (idle rows get none).
    const logitRow = new Map([...tokens.logitRows].map((r, m) => [Number(r), m]));
    this.sampleAll(
      byRow,
      out.logits,
      out.logits.length / tokens.logitRows.length,
      (r) => logitRow.get(r)!,
      (s) => s !== null,
    );
  }

  /**
   * Runs the forward pass, and while it runs computes the grammar masks of the sequences that may
   * sample after it (`sampling`); on failure fails the sequences in the step and returns null.
   */
  private async run(inStep: Sequence[], input: ForwardInput, sampling: Sequence[]): Promise<ForwardOutput | null> {
    // The pass's own JavaScript (packing inputs) runs first, then ONNX Runtime works on its threads.
    const pass = this.forward(input).then(
      (out) => {
        this.failures.consecutive = 0;
        return out;
      },
      (cause: unknown) => {
        const err = new EngineError('the forward pass failed', { cause });
        this.failures.consecutive++;
        this.failures.last = cause instanceof Error ? cause : new Error(String(cause));
        for (const s of inStep) this.fail(s, err);
        return null;
      },
    );
    const start = performance.now();
    await this.prepareMasks(sampling);
    this.maskMs += performance.now() - start;
    return pass;
  }

  /** Starts each constrained sequence's grammar and asks it which tokens may come next. */
  private async prepareMasks(seqs: Sequence[]): Promise<void> {
    await Promise.all(
      seqs.map(async (s) => {
        if (!s.req.constraint || s.allowed || s.finished) return;
        try {
          s.walker ??= await s.req.constraint.start();
          s.allowed = await s.walker.nextAllowed();
        } catch (cause) {
          this.fail(s, new EngineError('the output grammar failed', { cause }));
        }
      }),
    );
  }

  /** Samples the next token of each row whose `ready` holds (rows[i] reads logits row `logitRow(i)`). */
  private sampleAll<T extends Sequence | null>(
    rows: T[],
    logits: Float32Array,
    V: number,
    logitRow: (i: number) => number,
    ready: (s: T) => boolean,
  ): void {
    rows.forEach((s, i) => {
      if (!s || s.finished || !ready(s)) return;
      // max_tokens 0 (an echo request scoring its prompt) ends once the prompt is read.
      if (s.req.maxTokens === 0) return this.finish(s, 'length');
      try {
        const row = logits.subarray(logitRow(i) * V, (logitRow(i) + 1) * V);
        const banned = s.generated.length < (s.req.minTokens ?? 0) ? this.eosList : [];
        if (s.req.constraint && !s.allowed) throw new Error('a constrained row reached sampling without its grammar mask');
        this.accept(s, s.sampler.sample(row, banned, s.allowed), row);
      } catch (cause) {
        this.fail(s, new EngineError('sampling or detokenization failed', { cause }));
      }
    });
  }

  private accept(s: Sequence, token: number, logits: Float32Array): void {
    if (s.gen.cancelled) {
      this.finish(s, 'cancelled');
      return;
    }
    if (this.eosTokenIds.has(token) && !s.req.ignoreEos) {
      this.finish(s, 'stop');
      return;
    }
    if (s.walker) {
      if (!s.walker.accept(token)) throw new Error(`the output grammar rejected token ${token} that its own mask allowed`);
      s.allowed = null;
    }
    if (s.req.logprobs !== undefined) s.gen.pushLogprob(tokenLogprob(logits, token, s.req.logprobs));
    s.sampler.observe(token);
    s.generated.push(token);
    s.lastToken = token;
    s.req.onToken?.(token);
    const { text, stopped } = s.stops.push(s.detok.push(token));
    s.gen.push(text);
    if (stopped) this.finish(s, 'stop', true);
    else if (s.generated.length >= s.req.maxTokens || s.length >= this.limits.maxContext) this.finish(s, 'length');
  }

  private finish(s: Sequence, reason: FinishReason, stopMatched = false): void {
    if (s.finished) return;
    s.finished = true;
    s.walker?.dispose();
    // Choices still waiting for this prompt read it themselves.
    this.waiting.push(...s.forks.splice(0));
    if (reason !== 'cancelled' && !stopMatched) {
      const tail = s.stops.push(s.detok.flush());
      s.gen.push(tail.text);
      if (!tail.stopped) s.gen.push(s.stops.flush());
    }
    s.gen.finish(
      reason,
      { promptTokens: s.req.promptTokens.length, completionTokens: s.generated.length, cachedTokens: s.cachedTokens },
      s.req.logprobs !== undefined,
    );
    s.req.onDone?.();
  }

  private fail(s: Sequence, err: unknown): void {
    if (s.finished) return;
    s.finished = true;
    s.failed = true;
    s.walker?.dispose();
    this.waiting.push(...s.forks.splice(0));
    s.gen.fail(err);
    s.req.onDone?.();
  }
}
