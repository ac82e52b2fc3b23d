import type { TokenLogprob } from './logprobs.js';

export type FinishReason = 'stop' | 'length' | 'cancelled';

export interface GenerationResult {
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens whose keys/values were copied (the prefix cache, or another choice of the prompt) rather than computed. */
  cachedTokens: number;
  /** Each generated token's logprob, when the request asked for logprobs. */
  logprobs: TokenLogprob[] | null;
  /** Each prompt token's logprob (the first has none), when the request asked for prompt logprobs. */
  promptLogprobs: Array<TokenLogprob | null> | null;
}

/** A piece of output text and the logprobs of the tokens accepted since the previous piece. */
export interface Delta {
  text: string;
  logprobs: TokenLogprob[];
}

/**
 * What a caller holds for one request: an async iterator of text deltas (as they become final)
 * and a promise of the result. Cancelling (or aborting the request's signal) ends generation;
 * the engine frees the row at its next step.
 */
export class Generation implements AsyncIterable<string> {
  private readonly chunks: Delta[] = [];
  private pendingLogprobs: TokenLogprob[] = [];
  private readonly allLogprobs: TokenLogprob[] = [];
  private waiter: (() => void) | null = null;
  private ended = false;
  private failure: unknown = null;
  private text = '';
  readonly result: Promise<GenerationResult>;
  private settle!: (r: GenerationResult) => void;
  private reject!: (e: unknown) => void;
  cancelled = false;
  /**
   * The prompt tokens' logprobs when asked for: filled while the prompt is read, complete by the
   * first output delta (so a stream can send them with its echoed prompt).
   */
  promptLogprobs: Array<TokenLogprob | null> | null = null;

  constructor(
    readonly id: string,
    private readonly onCancel: () => void,
  ) {
    this.result = new Promise((resolve, reject) => {
      this.settle = resolve;
      this.reject = reject;
    });
    this.result.catch(() => {});
  }

  cancel(): void {
    if (this.ended || this.cancelled) return;
    this.cancelled = true;
    this.onCancel();
  }

  /** @internal engine side: a generated token's logprob, sent with the next piece of text. */
  pushLogprob(lp: TokenLogprob): void {
    this.pendingLogprobs.push(lp);
    this.allLogprobs.push(lp);
  }

  /** @internal engine side */
  push(text: string): void {
    if (!text) return;
    this.text += text;
    this.chunks.push({ text, logprobs: this.pendingLogprobs });
    this.pendingLogprobs = [];
    this.wake();
  }

  /** @internal engine side */
  finish(
    finishReason: FinishReason,
    usage: { promptTokens: number; completionTokens: number; cachedTokens: number },
    logprobs: boolean,
  ): void {
    if (this.ended) return;
    this.ended = true;
    // Tokens whose text a stop string held back, or that decode to nothing, still report logprobs.
    if (this.pendingLogprobs.length) this.chunks.push({ text: '', logprobs: this.pendingLogprobs });
    this.pendingLogprobs = [];
    this.settle({
      text: this.text,
      finishReason,
      ...usage,
      logprobs: logprobs ? this.allLogprobs : null,
      promptLogprobs: this.promptLogprobs,
    });
    this.wake();
  }

  /** @internal engine side */
  fail(err: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = err;
    this.reject(err);
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** The output text as it becomes final. */
  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for await (const d of this.deltas()) if (d.text) yield d.text;
  }

  /** The output text with the logprobs of its tokens. */
  async *deltas(): AsyncGenerator<Delta> {
    for (;;) {
      if (this.chunks.length) {
        yield this.chunks.shift()!;
        continue;
      }
      if (this.ended) {
        if (this.failure) throw this.failure;
        return;
      }
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }
}
