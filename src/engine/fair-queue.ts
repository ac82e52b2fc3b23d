/**
 * Fair admission across tenants, after the Virtual Token Counter (Sheng et al., "Fairness in
 * Serving Large Language Models", OSDI 2024).
 *
 * Contract:
 * - Each tenant has a counter of the service it received: prompt tokens computed × `inputCost` plus
 *   tokens generated × `outputCost`, divided by its weight (so counters compare across weights).
 * - A tenant is active while it has requests waiting or running. The next free row goes to the
 *   waiting request of the tenant with the smallest counter (ties: fewer running rows per weight,
 *   then the earlier request); within a tenant, lower `priority` first, then arrival order.
 *   Work-conserving: whoever waits gets a free row.
 * - Choosing, a tenant's counter includes what its running requests are still committed to: their
 *   unread prompt and their remaining max_tokens (at most `expectedOutput`), as VTC with length
 *   prediction does. Rows taken in one go (a batch of requests ending together) are then split by
 *   weight instead of all going to whoever was behind by a few tokens; the counter itself only ever
 *   counts tokens actually served.
 * - A tenant that becomes active is lifted to the smallest counter among the other active tenants
 *   (with none active, to the largest counter seen): idle time banks no credit.
 * - When no row is free, a waiting tenant below its share of rows (rows × its weight ÷ the active
 *   tenants' weights, with a row of slack so shares that do not divide evenly cause no churn) may
 *   take a row from the active tenant with the largest counter that holds more than its share and
 *   whose counter is not below the waiting tenant's: that tenant's latest, lowest-priority running
 *   request is paused (the caller keeps its cache) and waits at the head of its tenant's queue.
 *
 * The queue holds waiting items (paused ones included); running items are read from the caller.
 */

/** The tenant of requests that name none (a server without a keys file has only this one). */
export const DEFAULT_TENANT = 'default';

export interface FairQueueOptions {
  /** Counter cost of a prompt token read and of a token generated (VTC's w_in, w_out). */
  inputCost?: number;
  outputCost?: number;
  /** The most generated tokens a running request is expected to still produce (its max_tokens, capped). */
  expectedOutput?: number;
}

/** How the queue sees a request. */
export interface FairItem {
  tenant: string;
  /** Lower first within the tenant (vLLM's priority). */
  priority: number;
  /** Prompt tokens not yet read. */
  promptLeft: number;
  /** Tokens it may still generate (max_tokens less those generated). */
  outputLeft: number;
}

/** What a tenant received so far, and where it stands now. */
export interface TenantService {
  tenant: string;
  weight: number;
  /** The fair-share counter: weighted tokens of service ÷ weight. */
  counter: number;
  running: number;
  /** Waiting requests, paused ones included. */
  waiting: number;
  /** Prompt tokens computed for it. */
  promptTokens: number;
  /** Prompt tokens it got without computing them (a copy of another choice's prompt). */
  cachedTokens: number;
  completionTokens: number;
  /** Times one of its running requests was paused for another tenant. */
  preemptions: number;
}

interface Tenant<T> {
  weight: number;
  counter: number;
  /** Sorted by (priority, arrival). */
  queue: T[];
  promptTokens: number;
  cachedTokens: number;
  completionTokens: number;
  preemptions: number;
}

export class FairQueue<T extends object> {
  private readonly tenants = new Map<string, Tenant<T>>();
  /** Arrival order, kept by a paused item so it resumes ahead of later ones. */
  private readonly arrival = new WeakMap<T, number>();
  private nextArrival = 0;
  private waitingCount = 0;
  private readonly inputCost: number;
  private readonly outputCost: number;
  private readonly expectedOutput: number;

  constructor(
    private readonly describe: (item: T) => FairItem,
    /** The items running now (each owns a row). */
    private readonly running: () => readonly T[],
    options: FairQueueOptions = {},
  ) {
    this.inputCost = options.inputCost ?? 1;
    this.outputCost = options.outputCost ?? 2;
    this.expectedOutput = options.expectedOutput ?? 256;
  }

  /** Waiting items, paused ones included. */
  get length(): number {
    return this.waitingCount;
  }

  setWeight(tenant: string, weight: number): void {
    if (!(weight > 0) || !Number.isFinite(weight)) throw new RangeError(`tenant ${tenant}: weight must be a positive number`);
    this.tenant(tenant).weight = weight;
  }

  /** Queues new requests (or choices sent back to read their prompt themselves). */
  push(...items: T[]): void {
    for (const item of items) {
      const name = this.describe(item).tenant;
      const t = this.tenant(name);
      if (!this.isActive(name)) this.lift(name, t);
      this.insert(t, item);
    }
  }

  /** Sends a running item back to wait at the head of its tenant's queue (its row is kept by the caller). */
  pause(item: T): void {
    const t = this.tenant(this.describe(item).tenant);
    t.preemptions++;
    this.insert(t, item);
  }

  /** Takes the waiting item that gets the next free row, or undefined when none waits. */
  admit(): T | undefined {
    const name = this.nextTenant(this.runningByTenant());
    return name === undefined ? undefined : this.take(name);
  }

  /**
   * When every one of `rows` rows is busy: the running item to pause and the waiting item that takes
   * its row, or null when no waiting tenant is owed a row.
   */
  preempt(rows: number): { pause: T; admit: T } | null {
    const running = this.runningByTenant();
    const x = this.nextTenant(running);
    if (x === undefined) return null;
    const active = new Set([...running.keys(), ...[...this.tenants].filter(([, t]) => t.queue.length).map(([n]) => n)]);
    const totalWeight = [...active].reduce((sum, n) => sum + this.tenant(n).weight, 0);
    const share = (n: string) => (rows * this.tenant(n).weight) / totalWeight;
    if ((running.get(x)?.length ?? 0) + 1 > share(x)) return null;
    const counter = this.projected(x, running);
    let victim: string | undefined;
    let most = 0;
    for (const [n, items] of running) {
      const c = this.projected(n, running);
      if (n === x || items.length - 1 < share(n) || c < counter) continue;
      if (victim === undefined || c > most) [victim, most] = [n, c];
    }
    if (victim === undefined) return null;
    const pause = running.get(victim)!.reduce((a, b) => (this.order(b, a) > 0 ? b : a));
    const admit = this.take(x);
    this.pause(pause);
    return { pause, admit };
  }

  /** Removes and returns the waiting items `drop` selects. */
  removeWhere(drop: (item: T) => boolean): T[] {
    const removed: T[] = [];
    for (const t of this.tenants.values()) {
      removed.push(...t.queue.filter(drop));
      t.queue = t.queue.filter((item) => !drop(item));
    }
    this.waitingCount -= removed.length;
    return removed;
  }

  *items(): IterableIterator<T> {
    for (const t of this.tenants.values()) yield* t.queue;
  }

  /** Counts service a tenant received in one step (see the counter in the contract). */
  charge(tenant: string, served: { prompt: number; cached: number; completion: number }): void {
    const t = this.tenant(tenant);
    t.promptTokens += served.prompt;
    t.cachedTokens += served.cached;
    t.completionTokens += served.completion;
    t.counter += (served.prompt * this.inputCost + served.completion * this.outputCost) / t.weight;
  }

  /** Every tenant seen (or given a weight), with its service and its place now. */
  service(): TenantService[] {
    const running = this.runningByTenant();
    return [...this.tenants].map(([tenant, t]) => ({
      tenant,
      weight: t.weight,
      counter: t.counter,
      running: running.get(tenant)?.length ?? 0,
      waiting: t.queue.length,
      promptTokens: t.promptTokens,
      cachedTokens: t.cachedTokens,
      completionTokens: t.completionTokens,
      preemptions: t.preemptions,
    }));
  }

  private tenant(name: string): Tenant<T> {
    let t = this.tenants.get(name);
    if (!t) {
      t = { weight: 1, counter: 0, queue: [], promptTokens: 0, cachedTokens: 0, completionTokens: 0, preemptions: 0 };
      this.tenants.set(name, t);
    }
    return t;
  }

  private isActive(name: string): boolean {
    return this.tenant(name).queue.length > 0 || this.running().some((item) => this.describe(item).tenant === name);
  }

  private lift(name: string, t: Tenant<T>): void {
    const others = [...this.tenants.keys()].filter((n) => n !== name && this.isActive(n)).map((n) => this.tenant(n).counter);
    const floor = others.length ? Math.min(...others) : Math.max(0, ...[...this.tenants.values()].map((o) => o.counter));
    t.counter = Math.max(t.counter, floor);
  }

  /** The counter plus what the tenant's running requests are still committed to (see the contract). */
  private projected(name: string, running: Map<string, T[]>): number {
    const t = this.tenant(name);
    let committed = 0;
    for (const item of running.get(name) ?? []) {
      const { promptLeft, outputLeft } = this.describe(item);
      committed += promptLeft * this.inputCost + Math.min(outputLeft, this.expectedOutput) * this.outputCost;
    }
    return t.counter + committed / t.weight;
  }

  private runningByTenant(): Map<string, T[]> {
    const by = new Map<string, T[]>();
    for (const item of this.running()) {
      const name = this.describe(item).tenant;
      const list = by.get(name);
      if (list) list.push(item);
      else by.set(name, [item]);
    }
    return by;
  }

  /** The waiting tenant owed the next row. */
  private nextTenant(running: Map<string, T[]>): string | undefined {
    let best: string | undefined;
    let key: [number, number, number] = [0, 0, 0];
    for (const [name, t] of this.tenants) {
      if (!t.queue.length) continue;
      const k: [number, number, number] = [
        this.projected(name, running),
        (running.get(name)?.length ?? 0) / t.weight,
        this.stamp(t.queue[0]!),
      ];
      if (best === undefined || k[0] < key[0] || (k[0] === key[0] && (k[1] < key[1] || (k[1] === key[1] && k[2] < key[2])))) {
        best = name;
        key = k;
      }
    }
    return best;
  }

  private take(name: string): T {
    this.waitingCount--;
    return this.tenant(name).queue.shift()!;
  }

  private insert(t: Tenant<T>, item: T): void {
    this.stamp(item);
    let at = t.queue.length;
    while (at > 0 && this.order(t.queue[at - 1]!, item) > 0) at--;
    t.queue.splice(at, 0, item);
    this.waitingCount++;
  }

  /** Within a tenant: lower priority value first, then earlier arrival. */
  private order(a: T, b: T): number {
    return this.describe(a).priority - this.describe(b).priority || this.stamp(a) - this.stamp(b);
  }

  private stamp(item: T): number {
    let n = this.arrival.get(item);
    if (n === undefined) {
      n = this.nextArrival++;
      this.arrival.set(item, n);
    }
    return n;
  }
}
