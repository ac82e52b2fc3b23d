/**
 * The soak driver behind `npm run soak -- --minutes M [--concurrency C] [--seed S]`.
 *
 * Drives a real server process for M minutes with mixed traffic: three tenants with their own
 * API keys, more adapters than device slots (and than the host cache holds), streaming and not,
 * chat and text completions, clients that disconnect mid-stream, tenants probing each other's
 * adapters, and an admin uploading, replacing, unloading and deleting adapters meanwhile. Every
 * greedy answer of a stable adapter is compared with the answer it gave on a quiet server, so a
 * reply from the wrong adapter is caught. Its report is `ok` only when nothing unexpected
 * happened. RSS and open file descriptors of the server come from /proc (Linux).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AdapterStore, CONFIG_FILE, WEIGHTS_FILE } from '../lora/index.js';
import { loadHfModel } from '../model/index.js';
import { spawnServer, tempDir, writeRandomAdapter, writeTinyModel } from '../testing/index.js';
import { Dice } from './fuzz/mutators.js';

const TENANTS = ['acme', 'blue', 'cyan'];
const PER_TENANT = 4;
const SLOTS = 4;
const PROMPTS = ['hello', '환불 정책은 어떻게 되나요?', 'what is a lease?'];
const ADMIN = 'sk-soak-admin';
const keyOf = (tenant: string) => `sk-soak-${tenant}`;

export interface SoakOptions {
  minutes: number;
  concurrency: number;
  seed: number;
}

export async function runSoak({ minutes, concurrency, seed }: SoakOptions) {
  const dice = new Dice(seed);
  // Fixture: a tiny random model, 12 stable adapters in the store, one churn adapter per tenant.
  const root = tempDir('loraserve-soak-');
  const modelDir = writeTinyModel(join(root, 'tiny-llama'), { hidden: 64, maxPositions: 512 });
  const model = loadHfModel(modelDir);
  const storeDir = join(root, 'adapters');
  const store = await AdapterStore.open(storeDir);
  const stable: string[] = [];
  const files = async (seed: number) => {
    const dir = join(root, 'src', String(seed));
    await writeRandomAdapter(dir, model, { r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'] }, seed);
    return { config: readFileSync(join(dir, CONFIG_FILE), 'utf8'), weights: readFileSync(join(dir, WEIGHTS_FILE)) };
  };
  for (const [t, tenant] of TENANTS.entries()) {
    for (let j = 0; j < PER_TENANT; j++) {
      const name = `${tenant}-a${j}`;
      await store.put(name, await files(100 + t * 10 + j));
      stable.push(name);
    }
  }
  const churnVersions = await Promise.all([1, 2, 3].map((v) => files(900 + v)));
  model.weights.close();
  writeFileSync(
    join(root, 'keys.json'),
    JSON.stringify({
      keys: [{ key: ADMIN, admin: true }, ...TENANTS.map((tenant) => ({ key: keyOf(tenant), tenant, adapters: [`${tenant}-*`] }))],
    }),
  );

  const server = await spawnServer([
    '--model',
    modelDir,
    '--adapters',
    storeDir,
    '--keys',
    join(root, 'keys.json'),
    '--slots',
    String(SLOTS),
    '--host-cache-bytes',
    String(6 * 70_000),
    '--max-tokens',
    '64',
    '--log-level',
    'warn',
  ]);
  const pid = server.proc.pid!;

  interface Outcome {
    kind: string;
    status: number | 'network' | 'aborted';
    ok: boolean;
    problem?: string;
    latencyMs: number;
    ttftMs?: number;
    tokens?: number;
  }
  const outcomes: Outcome[] = [];
  const tenantOf = (adapter: string) => adapter.split('-')[0]!;
  const auth = (key: string, json = true) => ({ authorization: `Bearer ${key}`, ...(json ? { 'content-type': 'application/json' } : {}) });

  async function call(
    kind: string,
    key: string,
    path: string,
    init: RequestInit,
    expected: number[],
    check?: (body: unknown) => string | null,
  ): Promise<void> {
    const started = performance.now();
    try {
      const r = await fetch(`${server.url}${path}`, { ...init, headers: auth(key, init.body !== undefined) });
      const text = await r.text();
      let problem = expected.includes(r.status) ? null : `HTTP ${r.status}: ${text.slice(0, 200)}`;
      let tokens: number | undefined;
      if (!problem && r.status === 200 && check) {
        const body = JSON.parse(text) as { usage?: { completion_tokens: number } };
        tokens = body.usage?.completion_tokens;
        problem = check(body);
      }
      outcomes.push({
        kind,
        status: r.status,
        ok: problem === null,
        problem: problem ?? undefined,
        latencyMs: performance.now() - started,
        tokens,
      });
    } catch (err) {
      outcomes.push({ kind, status: 'network', ok: false, problem: (err as Error).message, latencyMs: performance.now() - started });
    }
  }

  const chatBody = (modelName: string, prompt: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ model: modelName, messages: [{ role: 'user', content: prompt }], max_tokens: 12, temperature: 0, ...extra });

  /** A streamed chat; `abortAfter` first content chunks, or read to [DONE]. */
  async function stream(kind: string, key: string, modelName: string, abortAfter: number | null): Promise<void> {
    const started = performance.now();
    const controller = new AbortController();
    let ttft: number | undefined;
    let tokens = 0;
    try {
      const r = await fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: auth(key),
        signal: controller.signal,
        body: chatBody(modelName, dice.pick(PROMPTS), {
          stream: true,
          temperature: 0.8,
          max_tokens: 32,
          stream_options: { include_usage: true },
        }),
      });
      if (r.status !== 200) {
        outcomes.push({
          kind,
          status: r.status,
          ok: false,
          problem: (await r.text()).slice(0, 200),
          latencyMs: performance.now() - started,
        });
        return;
      }
      const decoder = new TextDecoder();
      let buffer = '';
      let done = false;
      let problem: string | null = null;
      for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const event = buffer.slice(6, end);
          buffer = buffer.slice(end + 2);
          if (event === '[DONE]') {
            done = true;
            continue;
          }
          const data = JSON.parse(event) as {
            error?: unknown;
            model?: string;
            choices: Array<{ delta?: { content?: string } }>;
            usage?: { completion_tokens: number };
          };
          if (data.error) problem = `error chunk ${JSON.stringify(data.error)}`;
          else if (data.model !== modelName) problem = `chunk from model ${data.model}`;
          if (data.choices[0]?.delta?.content !== undefined && data.choices[0].delta.content !== '' && ttft === undefined)
            ttft = performance.now() - started;
          if (data.usage) tokens = data.usage.completion_tokens;
        }
        if (abortAfter !== null && ttft !== undefined) {
          controller.abort();
          outcomes.push({ kind, status: 'aborted', ok: true, latencyMs: performance.now() - started, ttftMs: ttft });
          return;
        }
      }
      if (!done && !problem) problem = 'the stream ended without [DONE]';
      outcomes.push({
        kind,
        status: 200,
        ok: problem === null,
        problem: problem ?? undefined,
        latencyMs: performance.now() - started,
        ttftMs: ttft,
        tokens,
      });
    } catch (err) {
      if (controller.signal.aborted) return;
      outcomes.push({ kind, status: 'network', ok: false, problem: (err as Error).message, latencyMs: performance.now() - started });
    }
  }

  // Reference answers on the quiet server: what each stable adapter says, greedily, to each prompt.
  const reference = new Map<string, string>();
  for (const name of stable) {
    for (const prompt of PROMPTS) {
      const r = await fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: auth(keyOf(tenantOf(name))),
        body: chatBody(name, prompt),
      });
      reference.set(
        `${name}|${prompt}`,
        ((await r.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content,
      );
    }
  }

  /** One request of the mixed traffic. */
  async function trafficStep(): Promise<void> {
    const name = dice.pick(stable);
    const tenant = tenantOf(name);
    const roll = dice.int(100);
    if (roll < 40) {
      const prompt = dice.pick(PROMPTS);
      return call('chat', keyOf(tenant), '/v1/chat/completions', { method: 'POST', body: chatBody(name, prompt) }, [200], (b) => {
        const body = b as { model: string; choices: Array<{ message: { content: string } }> };
        if (body.model !== name) return `answered as ${body.model}`;
        const want = reference.get(`${name}|${prompt}`)!;
        const got = body.choices[0]!.message.content;
        let same = 0;
        while (same < got.length && got[same] === want[same]) same++;
        return got === want
          ? null
          : `${name} answered ${JSON.stringify(got)}, not its own answer ${JSON.stringify(want)} (first ${same} characters agree)`;
      });
    }
    if (roll < 65) return stream('stream', keyOf(tenant), dice.chance(0.2) ? 'tiny-llama' : name, null);
    if (roll < 75)
      return call(
        'completion',
        keyOf(tenant),
        '/v1/completions',
        { method: 'POST', body: JSON.stringify({ model: name, prompt: dice.pick(PROMPTS), max_tokens: 16, temperature: 0.7 }) },
        [200],
        () => null,
      );
    if (roll < 87) return stream('disconnect', keyOf(tenant), name, 1);
    if (roll < 95) {
      const other = dice.pick(stable.filter((a) => tenantOf(a) !== tenant));
      return call('cross-tenant', keyOf(tenant), '/v1/chat/completions', { method: 'POST', body: chatBody(other, 'hi') }, [404]);
    }
    return call('unload', ADMIN, `/v1/adapters/${name}/unload`, { method: 'POST' }, [200, 409]);
  }

  /** The admin's churn: a tenant's churn adapter is uploaded, replaced, used and deleted. */
  async function churnStep(): Promise<void> {
    const tenant = dice.pick(TENANTS);
    const name = `${tenant}-churn`;
    const roll = dice.int(4);
    if (roll < 2) {
      const v = dice.pick(churnVersions);
      const form = new FormData();
      form.append('name', name);
      form.append('file', new Blob([v.config]), CONFIG_FILE);
      form.append('file', new Blob([v.weights]), WEIGHTS_FILE);
      const started = performance.now();
      const r = await fetch(`${server.url}/v1/adapters`, {
        method: 'POST',
        body: form,
        headers: { authorization: `Bearer ${ADMIN}` },
      }).catch((err: Error) => err);
      if (r instanceof Error)
        outcomes.push({ kind: 'upload', status: 'network', ok: false, problem: r.message, latencyMs: performance.now() - started });
      else
        outcomes.push({
          kind: 'upload',
          status: r.status,
          ok: [200, 201].includes(r.status),
          problem: [200, 201].includes(r.status) ? undefined : await r.text(),
          latencyMs: performance.now() - started,
        });
      return;
    }
    if (roll === 2)
      return call(
        'churn-chat',
        keyOf(tenant),
        '/v1/chat/completions',
        { method: 'POST', body: chatBody(name, 'hi', { temperature: 0.5 }) },
        [200, 404],
        () => null,
      );
    return call('delete', ADMIN, `/v1/adapters/${name}`, { method: 'DELETE' }, [200, 404]);
  }

  interface Sample {
    atMin: number;
    rssMiB: number;
    fds: number;
  }
  const samples: Sample[] = [];
  const t0 = performance.now();
  const sample = () => {
    const rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
    samples.push({
      atMin: (performance.now() - t0) / 60_000,
      rssMiB: Math.round(rss * 10) / 10,
      fds: readdirSync(`/proc/${pid}/fd`).length,
    });
  };
  sample();
  const sampler = setInterval(sample, Math.max(1000, (minutes * 60_000) / 120));

  const deadline = t0 + minutes * 60_000;
  const worker = async (step: () => Promise<void>) => {
    while (performance.now() < deadline) await step();
  };
  await Promise.all([...Array.from({ length: concurrency }, () => worker(trafficStep)), worker(churnStep)]);
  clearInterval(sampler);
  sample();
  const wallS = (performance.now() - t0) / 1000;

  const health = await fetch(`${server.url}/health`).then(
    (r) => r.status,
    () => 0,
  );
  server.proc.kill('SIGTERM');
  const exit = await server.exited;

  const pct = (xs: number[], p: number) => {
    if (!xs.length) return null;
    const sorted = [...xs].sort((a, b) => a - b);
    return Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! * 10) / 10;
  };
  /** Least-squares slope per minute over the samples after the first 10% of the run (warm-up). */
  const slope = (pick: (s: Sample) => number) => {
    const xs = samples.filter((s) => s.atMin >= minutes * 0.1);
    const n = xs.length;
    if (n < 2) return null;
    const mx = xs.reduce((a, s) => a + s.atMin, 0) / n;
    const my = xs.reduce((a, s) => a + pick(s), 0) / n;
    const num = xs.reduce((a, s) => a + (s.atMin - mx) * (pick(s) - my), 0);
    const den = xs.reduce((a, s) => a + (s.atMin - mx) ** 2, 0);
    return Math.round((num / den) * 100) / 100;
  };
  const count = (xs: Outcome[], key: (o: Outcome) => string) =>
    xs.reduce<Record<string, number>>((acc, o) => {
      acc[key(o)] = (acc[key(o)] ?? 0) + 1;
      return acc;
    }, {});
  const unexpected = outcomes.filter((o) => !o.ok);
  const tokens = outcomes.reduce((a, o) => a + (o.tokens ?? 0), 0);
  const afterWarmup = samples.find((s) => s.atMin >= minutes * 0.1) ?? samples[0]!;
  const report = {
    minutes,
    concurrency,
    seed,
    wallSeconds: Math.round(wallS),
    setup: { tenants: TENANTS.length, stableAdapters: stable.length, churnAdapters: TENANTS.length, slots: SLOTS },
    requests: { total: outcomes.length, byStatus: count(outcomes, (o) => String(o.status)), byKind: count(outcomes, (o) => o.kind) },
    unexpected: { count: unexpected.length, examples: unexpected.slice(0, 10).map((o) => `${o.kind}: ${o.problem}`) },
    wrongAdapterAnswers: unexpected.filter((o) => /not its own answer|answered as|chunk from model/.test(o.problem ?? '')).length,
    ttftMs: {
      p50: pct(
        outcomes.flatMap((o) => (o.ttftMs === undefined ? [] : [o.ttftMs])),
        50,
      ),
      p99: pct(
        outcomes.flatMap((o) => (o.ttftMs === undefined ? [] : [o.ttftMs])),
        99,
      ),
    },
    latencyMs: {
      p50: pct(
        outcomes.filter((o) => o.status === 200).map((o) => o.latencyMs),
        50,
      ),
      p99: pct(
        outcomes.filter((o) => o.status === 200).map((o) => o.latencyMs),
        99,
      ),
    },
    completionTokens: tokens,
    tokensPerSecond: Math.round((tokens / wallS) * 10) / 10,
    rssMiB: {
      start: samples[0]!.rssMiB,
      afterWarmup: afterWarmup.rssMiB,
      end: samples.at(-1)!.rssMiB,
      max: Math.max(...samples.map((s) => s.rssMiB)),
      slopePerMinute: slope((s) => s.rssMiB),
    },
    openFds: {
      start: samples[0]!.fds,
      afterWarmup: afterWarmup.fds,
      end: samples.at(-1)!.fds,
      max: Math.max(...samples.map((s) => s.fds)),
      slopePerMinute: slope((s) => s.fds),
    },
    healthAtEnd: health,
    exit,
  };
  return { report, ok: unexpected.length === 0 && health === 200 && exit.code === 0 };
}
