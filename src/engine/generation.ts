export type FinishReason = 'stop' | 'length' | 'cancelled';

export interface GenerationResult {
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
}

/**
 * What a caller holds for one request: an async iterator of text deltas (as they become final)
 * and a promise of the result. Cancelling (or aborting the request's signal) ends generation;
 * the engine frees the row at its next step.
 */
export class Generation implements AsyncIterable<string> {
  private readonly chunks: string[] = [];
  private waiter: (() => void) | null = null;
  private ended = false;
  private failure: unknown = null;
  private text = '';
  readonly result: Promise<GenerationResult>;
  private settle!: (r: GenerationResult) => void;
  private reject!: (e: unknown) => void;
  cancelled = false;

  constructor(readonly id: string, private readonly onCancel: () => void) {
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

  /** @internal engine side */
  push(text: string): void {
    if (!text) return;
    this.text += text;
    this.chunks.push(text);
    this.wake();
  }

  /** @internal engine side */
  finish(finishReason: FinishReason, promptTokens: number, completionTokens: number): void {
    if (this.ended) return;
    this.ended = true;
    this.settle({ text: this.text, finishReason, promptTokens, completionTokens });
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

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
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

