/**
 * `npm run bench:replicas [-- --requests N --adapters N --concurrency N --slots N]`: the same mixed
 * multi-adapter workload through HAProxy (deploy/haproxy/haproxy.cfg) in front of 1 and then 3
 * real replicas on one shared store; reports throughput and each cache tier's hit rate summed over
 * the replicas. Adapter affinity should raise the device hit rate: each replica sees only its share
 * of the adapters, so its few slots hold them. On a small shared machine the replicas compete for
 * the same cores: read the hit rates, not the speed.
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { tempDir } from '../tests/helpers/adapters.js';
import { adapterFiles, chat, counterBy, haproxyInstalled, startCluster, upload } from '../tests/helpers/cluster.js';
import { rng } from '../src/util/rng.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '90' },
    adapters: { type: 'string', default: '12' },
    concurrency: { type: 'string', default: '6' },
    slots: { type: 'string', default: '4' },
    'max-tokens': { type: 'string', default: '8' },
  },
});
const REQUESTS = Number(values.requests);
const ADAPTERS = Array.from({ length: Number(values.adapters) }, (_, i) => `tenant-${i}`);
const CONCURRENCY = Number(values.concurrency);
const MAX_TOKENS = Number(values['max-tokens']);

async function run(replicaCount: number) {
  const root = tempDir('loraserve-bench-replicas-');
  const cluster = await startCluster(root, replicaCount, ['--threads', '1', '--slots', values.slots!]);
  try {
    for (const [i, name] of ADAPTERS.entries()) {
      const r = await upload(cluster.url, name, await adapterFiles(cluster.modelDir, join(root, `src-${name}`), 8, i + 1));
      if (!r.ok) throw new Error(`upload ${name}: ${r.status} ${await r.text()}`);
    }
    // The same adapter sequence for both runs (seeded).
    const random = rng(7);
    const order = Array.from({ length: REQUESTS }, () => ADAPTERS[Math.floor(random.next() * ADAPTERS.length)]!);
    let next = 0;
    let tokens = 0;
    let failed = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < order.length) {
          const r = await chat(cluster.url, order[next++]!, MAX_TOKENS);
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
      requests: REQUESTS,
      failed,
      seconds: Number(seconds.toFixed(2)),
      requests_per_s: Number((REQUESTS / seconds).toFixed(2)),
      completion_tokens_per_s: Number((tokens / seconds).toFixed(1)),
      device_hit_rate: rate('device'),
      host_hit_rate: rate('host'),
      device_loads: misses.get('device') ?? 0,
    };
  } finally {
    await cluster.stop();
  }
}

if (!haproxyInstalled()) {
  process.stderr.write('bench:replicas needs haproxy (apt-get install -y haproxy)\n');
  process.exitCode = 2;
} else {
  const one = await run(1);
  const three = await run(3);
  const result = {
    workload: {
      adapters: ADAPTERS.length,
      requests: REQUESTS,
      concurrency: CONCURRENCY,
      max_tokens: MAX_TOKENS,
      slots_per_replica: Number(values.slots),
    },
    runs: [one, three],
    three_vs_one: {
      throughput: Number((three.requests_per_s / one.requests_per_s).toFixed(2)),
      device_loads: `${one.device_loads} → ${three.device_loads}`,
    },
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
