import type { Generation } from './generation.js';
import { IncrementalDetokenizer } from '../tokenizer/index.js';
import { Sampler, type SamplingParams } from './sampler.js';
import { StopMatcher } from './stop-matcher.js';

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
  /** Called with each generated token as it is accepted (token-level timing, before text is final). */
  onToken?: (token: number) => void;
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

  constructor(readonly req: SequenceRequest, readonly gen: Generation, decode: (ids: number[]) => string) {
    this.sampler = new Sampler(req.sampling);
    this.detok = new IncrementalDetokenizer(decode);
    this.stops = new StopMatcher(req.stop);
  }

  get length(): number {
    return this.req.promptTokens.length + this.generated.length;
  }

  /** True once the whole prompt is cached and the sequence decodes one token per step. */
  get decoding(): boolean {
    return this.prefilled === this.req.promptTokens.length;
  }
}
