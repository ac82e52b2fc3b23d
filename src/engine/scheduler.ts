/**
 * Continuous batching.
 *
 * Contract:
 * - One `step()` is one forward pass: either a prefill of requests admitted from the queue, or one
 *   decode token for every running request. Prefills go first, so a new request waits at most one
 *   decode step; a prefill is bounded by `maxBatch` rows and `maxBatchTokens` padded tokens.
 * - Requests join and leave only between steps. A finished or cancelled request keeps its row until
 *   the start of the next step, which frees it (and calls its `onDone`, releasing its adapter pin).
 * - Each row carries its own adapter slot (0 = base model), so any mix of adapters shares a step.
 * - A failed forward pass fails the requests that were in it and nothing else.
 */
import { EngineError } from '../errors.js';
import { Generation, type FinishReason } from './generation.js';
import { IncrementalDetokenizer } from '../tokenizer/index.js';
import { KvBatch, type KvDims } from './kv-batch.js';
import { Sampler, type SamplingParams } from './sampler.js';
import { StopMatcher } from './stop-matcher.js';

export interface ForwardInput {
  batch: number;
  seq: number;
  ids: BigInt64Array;
  positions: BigInt64Array;
  mask: BigInt64Array;
  slots: BigInt64Array;
  pastLength: number;
  pastKeys: Float32Array[];
  pastValues: Float32Array[];
}

export interface ForwardOutput {
  /** [batch, vocab] for each row's last position. */
  logits: Float32Array;
  keys: Float32Array[];
  values: Float32Array[];
}

export type Forward = (input: ForwardInput) => Promise<ForwardOutput>;

export interface SchedulerLimits {
  maxBatch: number;
  maxBatchTokens: number;
  /** Longest sequence (prompt + generated) a row may reach. */
  maxContext: number;
}

export interface SequenceRequest {
  promptTokens: number[];
  /** Adapter slot; 0 = the base model. */
  slot: number;
  sampling: SamplingParams;
  maxTokens: number;
  stop: readonly string[];
  /** Generate through EOS tokens (benchmarks, vLLM's ignore_eos). */
  ignoreEos?: boolean;
  signal?: AbortSignal;
  /** Called once when the request has left the engine, however it ended. */
  onDone?: () => void;
}

class Sequence {
  readonly generated: number[] = [];
  readonly sampler: Sampler;
  readonly detok: IncrementalDetokenizer;
  readonly stops: StopMatcher;
  finished = false;
  lastToken = 0;

  constructor(readonly req: SequenceRequest, readonly gen: Generation, decode: (ids: number[]) => string) {
    this.sampler = new Sampler(req.sampling);
    this.detok = new IncrementalDetokenizer(decode);
    this.stops = new StopMatcher(req.stop);
  }

  get length(): number {
    return this.req.promptTokens.length + this.generated.length;
  }
}

export class Scheduler {
  private waiting: Sequence[] = [];
  private running: Sequence[] = [];
  private readonly kv: KvBatch;
  private looping = false;
  private nextId = 0;
  private idleWaiters: Array<() => void> = [];
  /** Forward passes run so far, by kind (for tests and metrics). */
  readonly steps = { prefill: 0, decode: 0 };

  constructor(
    private readonly forward: Forward,
    kvDims: KvDims,
    readonly limits: SchedulerLimits,
    private readonly eosTokenIds: ReadonlySet<number>,
    private readonly decode: (ids: number[]) => string,
  ) {
    this.kv = new KvBatch(kvDims);
  }

  submit(req: SequenceRequest): Generation {
    const gen = new Generation(`seq-${this.nextId++}`, () => this.kick());
    const seq = new Sequence(req, gen, this.decode);
    if (req.signal?.aborted) gen.cancel();
    req.signal?.addEventListener('abort', () => gen.cancel(), { once: true });
    this.waiting.push(seq);
    this.kick();
    return gen;
  }

  get stats(): { waiting: number; running: number; kvFloats: number; kvPositions: number } {
    return { waiting: this.waiting.length, running: this.running.length, kvFloats: this.kv.floats, kvPositions: this.kv.size * this.kv.length };
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (!this.looping && !this.waiting.length && !this.running.length) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private kick(): void {
    if (this.looping) return;
    this.looping = true;
    void (async () => {
      try {
        while (await this.step()) await new Promise((r) => setImmediate(r));
      } finally {
        this.looping = false;
        for (const w of this.idleWaiters.splice(0)) w();
      }
    })();
  }

  /** One forward pass (see the contract above). Returns false when there was nothing to do. */
  async step(): Promise<boolean> {
    this.releaseFinished();
    const free = this.limits.maxBatch - this.running.length;
    if (this.waiting.length && free > 0) {
      const joining: Sequence[] = [];
      let longest = 0;
      while (joining.length < free && this.waiting.length) {
        const len = Math.max(longest, this.waiting[0]!.req.promptTokens.length);
        if (joining.length && len * (joining.length + 1) > this.limits.maxBatchTokens) break;
        longest = len;
        joining.push(this.waiting.shift()!);
      }
      await this.prefill(joining, longest);
      return true;
    }
    if (this.running.length) {
      await this.decodeStep();
      return true;
    }
    return false;
  }

  private releaseFinished(): void {
    for (const s of this.waiting) if (s.gen.cancelled) this.finish(s, 'cancelled');
    this.waiting = this.waiting.filter((s) => !s.finished);
    for (const s of this.running) if (s.gen.cancelled) this.finish(s, 'cancelled');
    if (this.running.some((s) => s.finished)) {
      const keep = this.running.flatMap((s, i) => (s.finished ? [] : [i]));
      this.kv.retain(keep);
      this.running = keep.map((i) => this.running[i]!);
    }
  }

  private async prefill(joining: Sequence[], seq: number): Promise<void> {
    const batch = joining.length;
    const ids = new BigInt64Array(batch * seq);
    const positions = new BigInt64Array(batch * seq);
    const mask = new Uint8Array(batch * seq);
    joining.forEach((s, r) => {
      const prompt = s.req.promptTokens;
      const pad = seq - prompt.length;
      // Left padding: every row's last prompt token sits in the last column.
      for (let j = 0; j < prompt.length; j++) {
        ids[r * seq + pad + j] = BigInt(prompt[j]!);
        positions[r * seq + pad + j] = BigInt(j);
        mask[r * seq + pad + j] = 1;
      }
    });
    const empty = this.kv.keys.map(() => new Float32Array(0));
    let out: ForwardOutput;
    try {
      this.steps.prefill++;
      out = await this.forward({
        batch, seq, ids, positions, mask: BigInt64Array.from(mask, (m) => BigInt(m)),
        slots: BigInt64Array.from(joining, (s) => BigInt(s.req.slot)), pastLength: 0, pastKeys: empty, pastValues: empty,
      });
    } catch (cause) {
      const err = new EngineError('the forward pass failed', { cause });
      for (const s of joining) this.fail(s, err);
      return;
    }
    this.kv.append({ size: batch, length: seq, keys: out.keys, values: out.values, mask });
    this.running.push(...joining);
    this.sampleAll(joining, out.logits);
  }

  private async decodeStep(): Promise<void> {
    const rows = this.running;
    const batch = rows.length;
    let out: ForwardOutput;
    try {
      this.steps.decode++;
      out = await this.forward({
        batch, seq: 1,
        ids: BigInt64Array.from(rows, (s) => BigInt(s.lastToken)),
        positions: BigInt64Array.from(rows, (s) => BigInt(s.length - 1)),
        mask: this.kv.maskWith(1),
        slots: BigInt64Array.from(rows, (s) => BigInt(s.req.slot)),
        pastLength: this.kv.length, pastKeys: this.kv.keys, pastValues: this.kv.values,
      });
    } catch (cause) {
      const err = new EngineError('the forward pass failed', { cause });
      for (const s of rows) this.fail(s, err);
      this.kv.retain([]);
      this.running = [];
      return;
    }
    this.kv.advance(out.keys, out.values);
    this.sampleAll(rows, out.logits);
  }

  private sampleAll(rows: Sequence[], logits: Float32Array): void {
    const V = logits.length / rows.length;
    rows.forEach((s, r) => {
      if (s.finished) return;
      try {
        this.accept(s, s.sampler.sample(logits.subarray(r * V, (r + 1) * V)));
      } catch (cause) {
        this.fail(s, new EngineError('sampling or detokenization failed', { cause }));
      }
    });
  }

  private accept(s: Sequence, token: number): void {
    if (s.gen.cancelled) return this.finish(s, 'cancelled');
    if (this.eosTokenIds.has(token) && !s.req.ignoreEos) return this.finish(s, 'stop');
    s.sampler.observe(token);
    s.generated.push(token);
    s.lastToken = token;
    const { text, stopped } = s.stops.push(s.detok.push(token));
    s.gen.push(text);
    if (stopped) return this.finish(s, 'stop', true);
    if (s.generated.length >= s.req.maxTokens || s.length >= this.limits.maxContext) this.finish(s, 'length');
  }

  private finish(s: Sequence, reason: FinishReason, stopMatched = false): void {
    if (s.finished) return;
    s.finished = true;
    if (reason !== 'cancelled' && !stopMatched) {
      const tail = s.stops.push(s.detok.flush());
      s.gen.push(tail.text);
      if (!tail.stopped) s.gen.push(s.stops.flush());
    }
    s.gen.finish(reason, s.req.promptTokens.length, s.generated.length);
    s.req.onDone?.();
  }

  private fail(s: Sequence, err: unknown): void {
    if (s.finished) return;
    s.finished = true;
    s.gen.fail(err);
    s.req.onDone?.();
  }
}

