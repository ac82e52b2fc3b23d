/**
 * What the engine's scheduler sees of a grammar (structured output): which tokens may come next,
 * and which one came. Tests drive the scheduler with hand-made constraints through this seam.
 */

/** A grammar one request's output must follow; each of its choices walks it separately. */
export interface OutputConstraint {
  /** A fresh walker at the grammar's start, for one row. */
  start(): Promise<ConstraintWalker>;
}

export interface ConstraintWalker {
  /**
   * The tokens that may come next: bit `t & 31` of word `t >> 5` is set when token t is allowed.
   * Once the grammar is complete only stop tokens are allowed.
   */
  nextAllowed(): Promise<Int32Array>;
  /** Advances past a sampled token; false when the grammar does not allow it. */
  accept(token: number): boolean;
  dispose(): void;
}
