/**
 * Runs the fuzzer against a real server process: a tiny random model, a store holding two
 * adapters, a --lora-root with one more. Every case must get an answer below 500 (a stream must
 * not end in a server_error chunk), the process must not die, the store must end as it began
 * (after removing what valid mutations legitimately added), and the server must still be
 * healthy and answering afterwards.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join, relative } from 'node:path';
import { AdapterStore, CONFIG_FILE, WEIGHTS_FILE } from '../../lora/index.js';
import { loadHfModel } from '../../model/index.js';
import { spawnServer, tempDir, writeRandomAdapter, writeTinyModel } from '../../testing/index.js';
import { buildCase, type FuzzRequest, type Material } from './cases.js';

export interface Finding {
  case: number;
  kind: string;
  what: string;
  problem: string;
}

export interface FuzzReport {
  seed: number;
  cases: number;
  durationMs: number;
  byKind: Record<string, { cases: number; statuses: Record<string, number> }>;
  /** Valid mutations the server accepted (uploads, registrations), removed again afterwards. */
  accepted: number;
  findings: Finding[];
  crashed: boolean;
  healthyAfter: boolean;
  storeUnchanged: boolean;
  exitCode: number | null;
}

interface Answer {
  status: number;
  contentType: string;
  body: Buffer;
}

function send(base: string, r: Pick<FuzzRequest, 'method' | 'path' | 'headers' | 'body'>, timeoutMs = 20_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // The path goes out exactly as built: a URL object would normalise away the `..` tricks.
    const { hostname, port } = new URL(base);
    const headers = { ...r.headers, ...(r.body ? { 'content-length': String(r.body.length) } : {}) };
    const req = request({ host: hostname, port, path: r.path, method: r.method, headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(r.body);
  });
}

/** Every file under `dir` with its SHA-256 (relative path → hash). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

/** A stream that ends in an error chunk of type server_error is a 5xx in disguise. */
function streamProblem(a: Answer): string | null {
  if (!a.contentType.startsWith('text/event-stream')) return null;
  for (const event of a.body.toString('utf8').split('\n\n')) {
    if (!event.startsWith('data: {')) continue;
    const error = (JSON.parse(event.slice(6)) as { error?: { type?: string; code?: string } }).error;
    if (error && error.type === 'server_error') return `stream ended with a server_error chunk (${error.code})`;
  }
  return null;
}

export async function runFuzz(options: { cases: number; seed: number; only?: number; log?: (line: string) => void }): Promise<FuzzReport> {
  const started = performance.now();
  const root = tempDir('loraserve-fuzz-');
  const modelDir = writeTinyModel(join(root, 'tiny-llama'));
  const model = loadHfModel(modelDir);
  const adapterDir = join(root, 'lora-root', 'ok');
  await writeRandomAdapter(adapterDir, model, { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'] }, 11);
  model.weights.close();
  const material: Material = {
    baseId: 'tiny-llama',
    existing: ['keep-a', 'keep-b'],
    config: readFileSync(join(adapterDir, CONFIG_FILE), 'utf8'),
    weights: readFileSync(join(adapterDir, WEIGHTS_FILE)),
    loraRootAdapter: 'ok',
  };
  const storeDir = join(root, 'adapters');
  const store = await AdapterStore.open(storeDir);
  for (const name of material.existing) await store.put(name, { config: material.config, weights: material.weights });
  const before = snapshot(storeDir);

  const server = await spawnServer([
    '--model',
    modelDir,
    '--adapters',
    storeDir,
    '--lora-root',
    join(root, 'lora-root'),
    '--slots',
    '2',
    '--max-tokens',
    '8',
    '--upload-bytes',
    '2000000',
    '--request-timeout-ms',
    '15000',
    '--log-level',
    'warn',
  ]);
  const findings: Finding[] = [];
  const byKind: FuzzReport['byKind'] = {};
  const created = new Set<string>();
  let crashed = false;
  const indices = options.only === undefined ? Array.from({ length: options.cases }, (_, i) => i) : [options.only];
  for (const i of indices) {
    const c = await buildCase(options.seed, i, material);
    const tally = (byKind[c.kind] ??= { cases: 0, statuses: {} });
    tally.cases++;
    let answer: Answer | null = null;
    try {
      answer = await send(server.url, c);
    } catch (err) {
      // No answer at all: either this connection alone was dropped, or the process is gone.
      crashed = !(await send(server.url, { method: 'GET', path: '/health', headers: {} }).then(
        (h) => h.status === 200,
        () => false,
      ));
      if (crashed) await server.stop();
      const problem = crashed
        ? `the server stopped answering (exit ${server.proc.exitCode ?? server.proc.signalCode}): ${server.stderr().slice(-1500)}`
        : `no answer: ${(err as Error).message}`;
      findings.push({ case: i, kind: c.kind, what: c.what, problem });
      tally.statuses.error = (tally.statuses.error ?? 0) + 1;
      if (crashed) break;
      continue;
    }
    tally.statuses[answer.status] = (tally.statuses[answer.status] ?? 0) + 1;
    const problem = answer.status >= 500 ? `HTTP ${answer.status}: ${answer.body.toString('utf8').slice(0, 300)}` : streamProblem(answer);
    if (problem) findings.push({ case: i, kind: c.kind, what: c.what, problem });
    if (answer.status < 300 && c.creates) created.add(createdName(answer.body) ?? c.creates);
    options.log?.(`${i}\t${c.kind}\t${answer.status}\t${c.what.slice(0, 120)}`);
  }

  let healthyAfter = false;
  let storeUnchanged = false;
  if (!crashed) {
    const get = (path: string) => send(server.url, { method: 'GET', path, headers: {} });
    const chat = await send(server.url, {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify({ model: 'keep-a', messages: [{ role: 'user', content: 'still there?' }], max_tokens: 4 })),
    });
    healthyAfter = (await get('/health')).status === 200 && (await get('/ready')).status === 200 && chat.status === 200;
    for (const name of created) await send(server.url, { method: 'DELETE', path: `/v1/adapters/${encodeURIComponent(name)}`, headers: {} });
    const listed = JSON.parse((await get('/v1/adapters')).body.toString('utf8')).data.map((a: { id: string }) => a.id);
    const after = snapshot(storeDir);
    storeUnchanged = JSON.stringify(listed) === JSON.stringify(material.existing) && JSON.stringify(after) === JSON.stringify(before);
    server.proc.kill('SIGTERM');
  }
  const { code } = await server.exited;
  return {
    seed: options.seed,
    cases: indices.length,
    durationMs: Math.round(performance.now() - started),
    byKind,
    accepted: created.size,
    findings,
    crashed,
    healthyAfter,
    storeUnchanged,
    exitCode: code,
  };
}

/**
 * The adapter a successful upload created, as the server names it: a mutated body can carry another
 * valid name than the case meant (a bit flip turned "fz-114" into "fj-114"), and cleanup must
 * delete what was really created.
 */
function createdName(body: Buffer): string | undefined {
  try {
    const id = (JSON.parse(body.toString('utf8')) as { id?: unknown }).id;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}
