/**
 * The generation requests this server has taken and not yet answered, each with the controller
 * that cancels it. A drain waits for the set to empty; at its deadline it aborts what is left.
 */
export class InFlight {
  private readonly active = new Set<AbortController>();
  private emptied: Array<() => void> = [];

  get size(): number {
    return this.active.size;
  }

  /** Tracks a request; call the returned function once it has been answered. */
  add(controller: AbortController): () => void {
    this.active.add(controller);
    return () => {
      this.active.delete(controller);
      if (this.active.size === 0) for (const wake of this.emptied.splice(0)) wake();
    };
  }

  whenEmpty(): Promise<void> {
    if (this.active.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.emptied.push(resolve));
  }

  abortAll(reason: Error): void {
    for (const c of this.active) c.abort(reason);
  }
}
