/**
 * Prometheus metrics. Besides loraserve's own, it exports the model-server metrics of the
 * Kubernetes Gateway API Inference Extension under vLLM's names, so an inference gateway (its
 * endpoint picker, llm-d) can route across replicas by queue depth, KV use and adapter affinity.
 * Counters and histograms are pushed as things happen; gauges read their values at scrape time.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CacheEvents, CacheOccupancy } from '../lora/index.js';

/** Where the gauges read from when Prometheus scrapes. */
export interface GaugeSource {
  /** Requests waiting for an adapter slot or a batch row. */
  queueDepth(): number;
  /** Requests in the running batch. */
  running(): number;
  /** KV cache utilisation, 0 to 1. */
  kvUsage(): number;
  /** The adapter cache: slots, pins, host bytes, who waits. */
  occupancy(): CacheOccupancy;
  /** Each tenant's usage since start and its fair-share state. */
  tenantUsage(): TenantUsage[];
  /** The prefix cache's totals since start (prompt tokens looked up and found, extents evicted) and its bytes; null when off. */
  prefixCache(): { queries: number; hits: number; evictions: number; bytes: number } | null;
}

/** A tenant's usage since start (by tenant name, never by key) and where it stands now. */
export interface TenantUsage {
  tenant: string;
  /** Completion requests admitted. */
  requests: number;
  /** Requests refused with 429. */
  rateLimited: number;
  /** Prompt tokens, cached ones included. */
  promptTokens: number;
  /** Prompt tokens copied rather than computed (the prefix cache, and choices of one prompt). */
  cachedTokens: number;
  completionTokens: number;
  /** Times one of its running requests was paused for another tenant. */
  preemptions: number;
  weight: number;
  /** The fair-share counter: weighted tokens served ÷ weight. */
  counter: number;
  running: number;
  waiting: number;
}

/** Accounting of one generation request. */
export interface RequestTrack {
  /** A token (or text delta) reached the client: first-token, then inter-token latency. */
  token(): void;
  /** The request ended with `status`; counts its tokens when it produced a result. */
  done(status: number, usage?: { promptTokens: number; completionTokens: number }): void;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: 'loraserve_requests_total',
    help: 'Generation requests by adapter, endpoint and HTTP status.',
    labelNames: ['adapter', 'endpoint', 'status'],
    registers: [this.registry],
  });
  private readonly tokens = new Counter({
    name: 'loraserve_tokens_total',
    help: 'Tokens by adapter and kind (prompt, completion).',
    labelNames: ['adapter', 'kind'],
    registers: [this.registry],
  });
  private readonly cacheHits = new Counter({
    name: 'loraserve_adapter_cache_hits_total',
    help: 'Adapter cache hits by tier.',
    labelNames: ['tier'],
    registers: [this.registry],
  });
  private readonly cacheMisses = new Counter({
    name: 'loraserve_adapter_cache_misses_total',
    help: 'Adapter cache misses by tier.',
    labelNames: ['tier'],
    registers: [this.registry],
  });
  private readonly cacheEvictions = new Counter({
    name: 'loraserve_adapter_cache_evictions_total',
    help: 'Adapter cache evictions by tier.',
    labelNames: ['tier'],
    registers: [this.registry],
  });
  private readonly loadFailures = new Counter({
    name: 'loraserve_adapter_load_failures_total',
    help: 'Adapter loads from disk that failed, by adapter and error code (adapter_corrupted: its files changed on disk after upload).',
    labelNames: ['adapter', 'code'],
    registers: [this.registry],
  });
  private readonly ttft = new Histogram({
    name: 'loraserve_time_to_first_token_seconds',
    help: 'Time from request arrival to its first token.',
    labelNames: ['adapter'],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  private readonly itl = new Histogram({
    name: 'loraserve_inter_token_latency_seconds',
    help: 'Time between consecutive streamed tokens.',
    labelNames: ['adapter'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  /** The adapter cache's hit, miss, eviction and load-failure counters. */
  readonly cacheEvents: CacheEvents = {
    hit: (tier) => this.cacheHits.inc({ tier }),
    miss: (tier) => this.cacheMisses.inc({ tier }),
    evict: (tier) => this.cacheEvictions.inc({ tier }),
    failed: (adapter, code) => this.loadFailures.inc({ adapter, code }),
  };

  /** Registers the gauges, each reading `source` when scraped. */
  gaugesFrom(source: GaugeSource): void {
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(read());
        },
      });
    gauge('loraserve_adapter_slots_used', 'Device slots holding an adapter.', () => source.occupancy().used);
    gauge('loraserve_adapter_slots_pinned', 'Device slots pinned by running requests.', () => source.occupancy().pinned);
    gauge('loraserve_adapter_slots', 'Device slots for adapters.', () => source.occupancy().capacity);
    gauge('loraserve_adapter_host_cache_bytes', 'Bytes of parsed adapters in host memory.', () => source.occupancy().hostBytes);
    gauge('loraserve_queue_depth', 'Requests waiting for an adapter slot or a batch row.', () => source.queueDepth());
    gauge('loraserve_running_requests', 'Requests in the running batch.', () => source.running());
    // Gateway API Inference Extension model-server protocol (vLLM names).
    gauge('vllm:num_requests_waiting', 'Requests waiting to be scheduled.', () => source.queueDepth());
    gauge('vllm:num_requests_running', 'Requests in the running batch.', () => source.running());
    gauge('vllm:gpu_cache_usage_perc', 'KV cache utilisation, 0 to 1.', () => source.kvUsage());
    this.tenantMetrics(source);
    this.prefixMetrics(source);
    new Gauge({
      name: 'vllm:lora_requests_info',
      help: 'Adapters in slots and waiting; the value is the scrape time.',
      labelNames: ['max_lora', 'running_lora_adapters', 'waiting_lora_adapters'],
      registers: [this.registry],
      collect() {
        const a = source.occupancy();
        this.reset();
        this.set(
          { max_lora: String(a.capacity), running_lora_adapters: a.running.join(','), waiting_lora_adapters: a.waiting.join(',') },
          Date.now() / 1000,
        );
      },
    });
  }

  /** Per-tenant counters and fair-share gauges, labelled by tenant name, read from `source` when scraped. */
  private tenantMetrics(source: GaugeSource): void {
    const perTenant = (
      Metric: typeof Counter | typeof Gauge,
      name: string,
      help: string,
      read: (t: TenantUsage) => Array<[Record<string, string>, number]>,
    ) =>
      new Metric({
        name,
        help,
        labelNames: ['tenant', ...(name === 'loraserve_tenant_tokens_total' ? ['kind'] : [])],
        registers: [this.registry],
        collect(this: { reset(): void; inc(labels: Record<string, string>, value: number): void }) {
          this.reset();
          for (const t of source.tenantUsage()) for (const [labels, value] of read(t)) this.inc({ tenant: t.tenant, ...labels }, value);
        },
      });
    perTenant(Counter, 'loraserve_tenant_requests_total', 'Completion requests admitted, by tenant.', (t) => [[{}, t.requests]]);
    perTenant(Counter, 'loraserve_tenant_rate_limited_total', 'Requests refused with 429, by tenant.', (t) => [[{}, t.rateLimited]]);
    perTenant(Counter, 'loraserve_tenant_tokens_total', 'Tokens by tenant and kind (prompt, cached, completion).', (t) => [
      [{ kind: 'prompt' }, t.promptTokens],
      [{ kind: 'cached' }, t.cachedTokens],
      [{ kind: 'completion' }, t.completionTokens],
    ]);
    perTenant(Counter, 'loraserve_tenant_preemptions_total', 'Running requests paused for another tenant, by tenant.', (t) => [
      [{}, t.preemptions],
    ]);
    perTenant(Gauge, 'loraserve_tenant_fair_share_counter', 'Fair-share counter: weighted tokens served divided by weight.', (t) => [
      [{}, t.counter],
    ]);
    perTenant(Gauge, 'loraserve_tenant_running_requests', 'Requests in the running batch, by tenant.', (t) => [[{}, t.running]]);
    perTenant(Gauge, 'loraserve_tenant_waiting_requests', 'Requests waiting for a batch row (paused ones included), by tenant.', (t) => [
      [{}, t.waiting],
    ]);
  }

  /** The prefix cache's counters (vLLM's names) and size, read from `source` when scraped; absent when the cache is off. */
  private prefixMetrics(source: GaugeSource): void {
    const total = (
      Metric: typeof Counter | typeof Gauge,
      name: string,
      help: string,
      read: (c: NonNullable<ReturnType<GaugeSource['prefixCache']>>) => number,
    ) =>
      new Metric({
        name,
        help,
        registers: [this.registry],
        collect(this: { reset(): void; inc(value: number): void }) {
          this.reset();
          const c = source.prefixCache();
          if (c) this.inc(read(c));
        },
      });
    total(Counter, 'vllm:prefix_cache_queries_total', 'Prompt tokens looked up in the prefix cache.', (c) => c.queries);
    total(Counter, 'vllm:prefix_cache_hits_total', 'Prompt tokens found in the prefix cache (copied instead of computed).', (c) => c.hits);
    total(Counter, 'loraserve_prefix_cache_evictions_total', 'Cached prefix extents evicted for room.', (c) => c.evictions);
    total(Gauge, 'loraserve_prefix_cache_bytes', 'Bytes of keys/values the prefix cache holds.', (c) => c.bytes);
  }

  track(adapter: string, endpoint: string, started = performance.now()): RequestTrack {
    let last = 0;
    return {
      token: () => {
        const now = performance.now();
        if (last === 0) this.ttft.observe({ adapter }, (now - started) / 1000);
        else this.itl.observe({ adapter }, (now - last) / 1000);
        last = now;
      },
      done: (status, usage) => {
        this.requests.inc({ adapter, endpoint, status: String(status) });
        if (!usage) return;
        this.tokens.inc({ adapter, kind: 'prompt' }, usage.promptTokens);
        this.tokens.inc({ adapter, kind: 'completion' }, usage.completionTokens);
      },
    };
  }
}
