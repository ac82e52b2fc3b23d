/**
 * The driver behind `npm run bench:replicas [-- --requests N --adapters N --concurrency N --slots N]`: the same mixed
 * multi-adapter workload through HAProxy (deploy/haproxy/haproxy.cfg) in front of 1 and then 3
 * real replicas on one shared store; reports throughput and each cache tier's hit rate summed over
 * the replicas. Adapter affinity should raise the device hit rate: each replica sees only its share
 * of the adapters, so its few slots hold them. On a small shared machine the replicas compete for
 * the same cores: read the hit rates, not the speed.
 */
import { join } from 'node:path';
import { adapterFiles, chat, counterBy, startCluster, tempDir, upload } from '../testing/index.js';
import { rng } from '../util/rng.js';

export interface ReplicasOptions {
  requests: number;
  adapters: number;
  concurrency: number;
  slots: number;
  maxTokens: number;
}

async function run(replicaCount: number, o: ReplicasOptions) {
  const adapters = Array.from({ length: o.adapters }, (_, i) => `tenant-${i}`);
  const root = tempDir('loraserve-bench-replicas-');
  const cluster = await startCluster(root, replicaCount, ['--threads', '1', '--slots', String(o.slots)]);
  try {
    for (const [i, name] of adapters.entries()) {
      const r = await upload(cluster.url, name, await adapterFiles(cluster.modelDir, join(root, `src-${name}`), 8, i + 1));
      if (!r.ok) throw new Error(`upload ${name}: ${r.status} ${await r.text()}`);
    }
    // The same adapter sequence for both runs (seeded).
    const random = rng(7);
    const order = Array.from({ length: o.requests }, () => adapters[Math.floor(random.next() * adapters.length)]!);
    let next = 0;
    let tokens = 0;
    let failed = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (next < order.length) {
          const r = await chat(cluster.url, order[next++]!, o.maxTokens);
          if (!r.ok) failed++;
          else tokens += ((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens;
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const sum = async (metric: string) => {
      const total = new Map<string, number>();
      for (const rep of cluster.replicas)
        for (const [tier, n] of await counterBy(rep.url, metric, 'tier')) total.set(tier, (total.get(tier) ?? 0) + n);
      return total;
    };
    const [hits, misses] = [await sum('loraserve_adapter_cache_hits_total'), await sum('loraserve_adapter_cache_misses_total')];
    const rate = (tier: string) => {
      const h = hits.get(tier) ?? 0;
      const m = misses.get(tier) ?? 0;
      return h + m ? Number((h / (h + m)).toFixed(3)) : null;
    };
    return {
      replicas: replicaCount,
      requests: o.requests,
      failed,
      seconds: Number(seconds.toFixed(2)),
      requests_per_s: Number((o.requests / seconds).toFixed(2)),
      completion_tokens_per_s: Number((tokens / seconds).toFixed(1)),
      device_hit_rate: rate('device'),
      host_hit_rate: rate('host'),
      device_loads: misses.get('device') ?? 0,
    };
  } finally {
    await cluster.stop();
  }
}

/** One run through HAProxy with one replica, then one with three, on the same seeded workload. */
export async function benchReplicas(o: ReplicasOptions) {
  const one = await run(1, o);
  const three = await run(3, o);
  return {
    workload: {
      adapters: o.adapters,
      requests: o.requests,
      concurrency: o.concurrency,
      max_tokens: o.maxTokens,
      slots_per_replica: o.slots,
    },
    runs: [one, three],
    three_vs_one: {
      throughput: Number((three.requests_per_s / one.requests_per_s).toFixed(2)),
      device_loads: `${one.device_loads} → ${three.device_loads}`,
    },
  };
}
