/**
 * Several real `loraserve serve` replicas sharing one adapter store, behind a real HAProxy running
 * the shipped deploy/haproxy/haproxy.cfg, all on loopback: for the multi-replica test and the
 * replica benchmark.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadHfModel } from '../model/index.js';
import { writeRandomAdapter } from './random-adapter.js';
import { spawnServer, writeTinyModel, type ChildServer } from './child-server.js';
import { multipart } from './multipart.js';

export const HAPROXY_CFG = join(import.meta.dirname, '..', '..', 'deploy', 'haproxy', 'haproxy.cfg');
/** The shipped config names three replicas. */
const CONFIG_REPLICAS = 3;

export function haproxyInstalled(): boolean {
  return spawnSync('haproxy', ['-v'], { stdio: 'ignore' }).status === 0;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface Cluster {
  /** The balancer. */
  url: string;
  replicas: ChildServer[];
  storeDir: string;
  modelDir: string;
  /** HAProxy's view of each replica (r1, r2, …): UP, DOWN, … */
  serverStatus(): Promise<Record<string, string>>;
  waitStatus(server: string, status: 'UP' | 'DOWN'): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts `count` replicas (1 to 3) on one shared store and HAProxy in front. With fewer than three
 * replicas the config's remaining server lines point at the same replicas again, so one config
 * serves both the 1-replica and the 3-replica runs.
 */
export async function startCluster(root: string, count: number, replicaArgs: string[] = []): Promise<Cluster> {
  const modelDir = writeTinyModel(join(root, 'model'));
  const storeDir = join(root, 'store');
  const replicas = await Promise.all(
    Array.from({ length: count }, () => spawnServer(['--model', modelDir, '--adapters', storeDir, ...replicaArgs])),
  );
  const [lbPort, statsPort] = [await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = { ...process.env, LB_BIND: `127.0.0.1:${lbPort}`, LB_STATS_BIND: `127.0.0.1:${statsPort}` };
  for (let i = 0; i < CONFIG_REPLICAS; i++) env[`REPLICA_${i + 1}`] = new URL(replicas[i % count]!.url).host;
  const haproxy: ChildProcess = spawn('haproxy', ['-db', '-f', HAPROXY_CFG], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let haproxyErr = '';
  haproxy.stderr!.on('data', (d) => (haproxyErr += d));
  const haproxyExited = new Promise((resolve) => haproxy.on('exit', resolve));

  const serverStatus = async (): Promise<Record<string, string>> => {
    const csv = await (await fetch(`http://127.0.0.1:${statsPort}/stats;csv`)).text();
    const [header, ...rows] = csv.trim().split('\n');
    const cols = header!.replace(/^# /, '').split(',');
    const [px, sv, st] = ['pxname', 'svname', 'status'].map((c) => cols.indexOf(c));
    return Object.fromEntries(
      rows
        .map((r) => r.split(','))
        .filter((r) => r[px!] === 'by_adapter' && /^r\d+$/.test(r[sv!]!))
        .map((r) => [r[sv!]!, r[st!]!]),
    );
  };
  const waitStatus = async (server: string, status: 'UP' | 'DOWN') => {
    for (;;) {
      if (haproxy.exitCode !== null) throw new Error(`haproxy exited: ${haproxyErr}`);
      const now = await serverStatus().catch(() => ({}) as Record<string, string>);
      if (now[server] === status) return;
      await sleep(100);
    }
  };
  const cluster: Cluster = {
    url: `http://127.0.0.1:${lbPort}`,
    replicas,
    storeDir,
    modelDir,
    serverStatus,
    waitStatus,
    async stop() {
      haproxy.kill('SIGKILL');
      await haproxyExited;
      await Promise.all(replicas.map((r) => r.stop()));
    },
  };
  try {
    for (let i = 1; i <= CONFIG_REPLICAS; i++) await waitStatus(`r${i}`, 'UP');
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** A random PEFT adapter for the cluster's tiny model, as the files an upload sends. */
export async function adapterFiles(modelDir: string, dir: string, r: number, seed: number): Promise<Record<string, Buffer>> {
  const model = loadHfModel(modelDir);
  try {
    await writeRandomAdapter(dir, model, { r, lora_alpha: 2 * r, target_modules: ['q_proj', 'v_proj'] }, seed);
  } finally {
    model.weights.close();
  }
  return {
    'adapter_config.json': readFileSync(join(dir, 'adapter_config.json')),
    'adapter_model.safetensors': readFileSync(join(dir, 'adapter_model.safetensors')),
  };
}

export async function upload(url: string, name: string, files: Record<string, Buffer>): Promise<Response> {
  const { payload, headers } = multipart({ name }, files);
  return fetch(`${url}/v1/adapters`, { method: 'POST', body: new Uint8Array(payload), headers });
}

export async function chat(url: string, model: string, maxTokens = 2): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello there' }], max_tokens: maxTokens, temperature: 0 }),
  });
}

/** One replica's Prometheus counter `name` summed per value of `label`. */
export async function counterBy(replicaUrl: string, name: string, label: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${replicaUrl}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const key = new RegExp(`${label}="([^"]*)"`).exec(line)?.[1];
    if (key === undefined) continue;
    out.set(key, (out.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}
