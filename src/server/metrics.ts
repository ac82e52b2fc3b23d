/**
 * Prometheus metrics. Besides loraserve's own, it exports the model-server metrics of the
 * Kubernetes Gateway API Inference Extension under vLLM's names, so an inference gateway (its
 * endpoint picker, llm-d) can route across replicas by queue depth, KV use and adapter affinity.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({ name: 'loraserve_requests_total', help: 'Generation requests by adapter, endpoint and HTTP status.', labelNames: ['adapter', 'endpoint', 'status'], registers: [this.registry] });
  readonly tokens = new Counter({ name: 'loraserve_tokens_total', help: 'Tokens by adapter and kind (prompt, completion).', labelNames: ['adapter', 'kind'], registers: [this.registry] });
  readonly cacheHits = new Counter({ name: 'loraserve_adapter_cache_hits_total', help: 'Adapter cache hits by tier.', labelNames: ['tier'], registers: [this.registry] });
  readonly cacheMisses = new Counter({ name: 'loraserve_adapter_cache_misses_total', help: 'Adapter cache misses by tier.', labelNames: ['tier'], registers: [this.registry] });
  readonly cacheEvictions = new Counter({ name: 'loraserve_adapter_cache_evictions_total', help: 'Adapter cache evictions by tier.', labelNames: ['tier'], registers: [this.registry] });
  readonly loadFailures = new Counter({ name: 'loraserve_adapter_load_failures_total', help: 'Adapter loads from disk that failed, by adapter and error code (adapter_corrupted: files changed on disk after upload).', labelNames: ['adapter', 'code'], registers: [this.registry] });
  readonly slotsUsed = new Gauge({ name: 'loraserve_adapter_slots_used', help: 'Device slots holding an adapter.', registers: [this.registry] });
  readonly slotsPinned = new Gauge({ name: 'loraserve_adapter_slots_pinned', help: 'Device slots pinned by running requests.', registers: [this.registry] });
  readonly slotsTotal = new Gauge({ name: 'loraserve_adapter_slots', help: 'Device slots for adapters.', registers: [this.registry] });
  readonly hostCacheBytes = new Gauge({ name: 'loraserve_adapter_host_cache_bytes', help: 'Bytes of parsed adapters in host memory.', registers: [this.registry] });
  readonly queueDepth = new Gauge({ name: 'loraserve_queue_depth', help: 'Requests waiting for an adapter slot or a batch row.', registers: [this.registry] });
  readonly running = new Gauge({ name: 'loraserve_running_requests', help: 'Requests in the running batch.', registers: [this.registry] });
  readonly ttft = new Histogram({ name: 'loraserve_time_to_first_token_seconds', help: 'Time from request arrival to its first token.', labelNames: ['adapter'], buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [this.registry] });
  readonly itl = new Histogram({ name: 'loraserve_inter_token_latency_seconds', help: 'Time between consecutive streamed tokens.', labelNames: ['adapter'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [this.registry] });
  // Gateway API Inference Extension model-server protocol (vLLM names).
  readonly vllmWaiting = new Gauge({ name: 'vllm:num_requests_waiting', help: 'Requests waiting to be scheduled.', registers: [this.registry] });
  readonly vllmRunning = new Gauge({ name: 'vllm:num_requests_running', help: 'Requests in the running batch.', registers: [this.registry] });
  readonly vllmKvUsage = new Gauge({ name: 'vllm:gpu_cache_usage_perc', help: 'KV cache utilisation, 0 to 1.', registers: [this.registry] });
  readonly vllmLoraInfo = new Gauge({ name: 'vllm:lora_requests_info', help: 'Adapters in slots and waiting; the value is the update time.', labelNames: ['max_lora', 'running_lora_adapters', 'waiting_lora_adapters'], registers: [this.registry] });
}
