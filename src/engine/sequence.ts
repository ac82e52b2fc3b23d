import type { ConstraintWalker, OutputConstraint } from '../grammar/index.js';
import type { AdapterMix } from '../lora/index.js';
import type { Generation } from './generation.js';
import type { TokenLogprob } from './logprobs.js';
import { IncrementalDetokenizer } from '../tokenizer/index.js';
import { Sampler, type SamplingParams } from './sampler.js';
import { StopMatcher } from './stop-matcher.js';

export interface SequenceRequest {
  promptTokens: number[];
  /** The adapters this request's row applies, with weights ([] = the base model). */
  adapters: AdapterMix;
  sampling: SamplingParams;
  maxTokens: number;
  stop: readonly string[];
  /** Generate through EOS tokens (benchmarks, vLLM's ignore_eos). */
  ignoreEos?: boolean;
  /** EOS cannot end the output before this many tokens (vLLM's min_tokens). */
  minTokens?: number;
  signal?: AbortSignal;
  /** Called once when the request has left the engine, however it ended. */
  onDone?: () => void;
  /** Called with each generated token as it is accepted (token-level timing, before text is final). */
  onToken?: (token: number) => void;
  /** Report each generated token's logprob with this many most likely alternatives (0..20). */
  logprobs?: number;
  /** Report the prompt tokens' logprobs too (needs logits at every prompt position; `logprobs` alternatives). */
  promptLogprobs?: boolean;
  /** A grammar the output must follow (structured output); it ends the output when complete. */
  constraint?: OutputConstraint;
  /** Whose request this is: rows are shared fairly across tenants (fair-queue.ts). */
  tenant?: string;
  /** Order among one tenant's waiting requests: lower first (vLLM's priority); default 0. */
  priority?: number;
  /**
   * What this row computes with, for the prefix cache (prefix-cache.ts): rows with the same key and
   * the same leading tokens have the same keys/values. Slots are reused by other adapters, so only
   * the caller can name a row's identity. Absent: the row neither uses nor fills the cache.
   */
  prefixKey?: string;
}

/** One request's state inside the scheduler: its cache row, how much of it is cached, its output. */
export class Sequence {
  readonly generated: number[] = [];
  readonly sampler: Sampler;
  readonly detok: IncrementalDetokenizer;
  readonly stops: StopMatcher;
  finished = false;
  lastToken = 0;
  /** The KV cache row it owns, or -1 while it waits for one. */
  row = -1;
  /** Prompt tokens already in the cache (prefill proceeds in chunks). */
  prefilled = 0;
  /** Prompt tokens copied from the prefix cache or from another choice's row rather than read. */
  cachedTokens = 0;
  /** Set when it ended on an error (its row's contents are not trusted). */
  failed = false;
  /** The prompt tokens' logprobs so far, when asked for (the first token has none). */
  readonly promptLogprobs: Array<TokenLogprob | null> | null;
  /** Further choices of the same prompt, waiting to copy this sequence's cache row once its prompt is read. */
  forks: Sequence[] = [];
  /** This row's place in its grammar, once started (see `req.constraint`). */
  walker: ConstraintWalker | null = null;
  /** The tokens the grammar allows next; null until computed for the current position. */
  allowed: Int32Array | null = null;

  constructor(
    readonly req: SequenceRequest,
    readonly gen: Generation,
    decode: (ids: number[]) => string,
  ) {
    this.sampler = new Sampler(req.sampling, req.promptTokens);
    this.detok = new IncrementalDetokenizer(decode);
    this.stops = new StopMatcher(req.stop);
    this.promptLogprobs = req.promptLogprobs ? [null] : null;
  }

  get length(): number {
    return this.req.promptTokens.length + this.generated.length;
  }

  /** True once the whole prompt is cached and the sequence decodes one token per step. */
  get decoding(): boolean {
    return this.prefilled === this.req.promptTokens.length;
  }
}
