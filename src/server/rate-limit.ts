/**
 * Per-tenant limits from the keys file, checked when a completion is admitted: requests in flight
 * (`max_concurrent`: running + queued, each choice counting), requests queued (`max_queued`), and
 * two token buckets refilled continuously over a minute (`requests_per_minute`;
 * `tokens_per_minute`, prompt + completion). A request is admitted while the token bucket holds its
 * prompt (a full bucket admits any prompt); its completion tokens are charged when it ends, so a
 * bucket may go into debt, which delays the next request and never cuts a running one. Past a limit:
 * 429 `rate_limit_exceeded` with `Retry-After`; every completion response of a limited tenant
 * carries OpenAI's `x-ratelimit-*` headers for the buckets it has.
 */
import { RateLimitedError } from '../errors.js';

export interface TenantPolicy {
  /** Share of the rows under contention, relative to other tenants (fair-queue.ts). */
  weight: number;
  maxConcurrent: number | null;
  maxQueued: number | null;
  tokensPerMinute: number | null;
  requestsPerMinute: number | null;
}

export const DEFAULT_POLICY: TenantPolicy = {
  weight: 1,
  maxConcurrent: null,
  maxQueued: null,
  tokensPerMinute: null,
  requestsPerMinute: null,
};

const MINUTE_MS = 60_000;

/** A bucket of `capacity` refilled at `capacity` per minute; its level may go below zero (debt). */
class TokenBucket {
  private level: number;
  private at: number;

  constructor(
    readonly capacity: number,
    private readonly now: () => number,
  ) {
    this.level = capacity;
    this.at = now();
  }

  current(): number {
    const t = this.now();
    this.level = Math.min(this.capacity, this.level + ((t - this.at) * this.capacity) / MINUTE_MS);
    this.at = t;
    return this.level;
  }

  take(n: number): void {
    this.level = this.current() - n;
  }

  /** Milliseconds until the level reaches `n`. */
  msUntil(n: number): number {
    return Math.max(0, Math.ceil(((n - this.current()) * MINUTE_MS) / this.capacity));
  }
}

/** OpenAI's reset durations: "20ms", "6s", "1m30s". */
function duration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const s = Math.ceil(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${s % 60}s`;
}

/** What a tenant asked of the server so far. */
export interface TenantCounts {
  /** Completion requests admitted. */
  requests: number;
  /** Requests refused with 429 (its limits or the server's queue). */
  rateLimited: number;
}

interface TenantState extends TenantCounts {
  policy: TenantPolicy;
  inFlight: number;
  requestBucket: TokenBucket | null;
  tokenBucket: TokenBucket | null;
}

export interface Admission {
  /** The x-ratelimit-* headers for the response. */
  headers: Record<string, string>;
  /** Call once when the request's generations have ended, with the tokens they generated. */
  settle(completionTokens: number): void;
}

export class TenantLimiter {
  private readonly tenants = new Map<string, TenantState>();

  constructor(
    policies: ReadonlyMap<string, TenantPolicy>,
    private readonly now: () => number = Date.now,
  ) {
    for (const [name, policy] of policies) this.state(name, policy);
  }

  /** Every tenant with a policy or a request so far, with its counts. */
  counts(): Map<string, TenantCounts> {
    return new Map([...this.tenants].map(([name, t]) => [name, { requests: t.requests, rateLimited: t.rateLimited }]));
  }

  /**
   * Admits a completion of `sequences` generations reading `promptTokens` in all, or throws 429.
   * `running`: the tenant's sequences holding a batch row now (the rest of its in-flight ones wait).
   */
  admit(tenant: string, cost: { promptTokens: number; sequences: number }, running: number): Admission {
    const t = this.state(tenant);
    const { maxConcurrent, maxQueued } = t.policy;
    const refuse = (why: string, retryMs: number): never => {
      t.rateLimited++;
      throw new RateLimitedError(`tenant ${tenant}: ${why}`, {
        headers: { ...this.headers(t), 'retry-after': String(Math.max(1, Math.ceil(retryMs / 1000))) },
      });
    };
    if (maxConcurrent !== null && t.inFlight + cost.sequences > maxConcurrent)
      refuse(`${t.inFlight} requests in flight; max_concurrent is ${maxConcurrent}`, 1000);
    const queued = Math.max(0, t.inFlight - running);
    if (maxQueued !== null && queued + cost.sequences > maxQueued) refuse(`${queued} requests queued; max_queued is ${maxQueued}`, 1000);
    if (t.requestBucket && t.requestBucket.current() < 1)
      refuse(`requests_per_minute ${t.requestBucket.capacity} reached`, t.requestBucket.msUntil(1));
    const tokens = t.tokenBucket;
    const needed = tokens ? Math.min(cost.promptTokens, tokens.capacity) : 0;
    if (tokens && tokens.current() < needed) refuse(`tokens_per_minute ${tokens.capacity} reached`, tokens.msUntil(needed));
    t.requestBucket?.take(1);
    tokens?.take(cost.promptTokens);
    t.requests++;
    t.inFlight += cost.sequences;
    let settled = false;
    return {
      headers: this.headers(t),
      settle: (completionTokens) => {
        if (settled) return;
        settled = true;
        t.inFlight -= cost.sequences;
        tokens?.take(completionTokens);
      },
    };
  }

  /** Counts a 429 the tenant got from elsewhere (the server's queue bound). */
  refused(tenant: string): void {
    this.state(tenant).rateLimited++;
  }

  private headers(t: TenantState): Record<string, string> {
    const trio = (kind: 'requests' | 'tokens', b: TokenBucket | null) =>
      b
        ? {
            [`x-ratelimit-limit-${kind}`]: String(b.capacity),
            [`x-ratelimit-remaining-${kind}`]: String(Math.max(0, Math.floor(b.current()))),
            [`x-ratelimit-reset-${kind}`]: duration(b.msUntil(b.capacity)),
          }
        : {};
    return { ...trio('requests', t.requestBucket), ...trio('tokens', t.tokenBucket) };
  }

  private state(name: string, policy: TenantPolicy = DEFAULT_POLICY): TenantState {
    let t = this.tenants.get(name);
    if (!t) {
      t = {
        policy,
        requests: 0,
        rateLimited: 0,
        inFlight: 0,
        requestBucket: policy.requestsPerMinute === null ? null : new TokenBucket(policy.requestsPerMinute, this.now),
        tokenBucket: policy.tokensPerMinute === null ? null : new TokenBucket(policy.tokensPerMinute, this.now),
      };
      this.tenants.set(name, t);
    }
    return t;
  }
}
