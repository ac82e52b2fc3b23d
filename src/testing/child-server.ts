/**
 * A real `loraserve serve` in a child process: for what only a process can show (signals, exit
 * codes, kill -9, crashes). `preload` names modules the child imports first (tests load their fault
 * hooks this way).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { writeRandomModel, type RandomModelOptions } from './random-model.js';

const ROOT = join(import.meta.dirname, '..', '..');
const MAX_LINES = 20_000;

export interface ChildServer {
  proc: ChildProcess;
  url: string;
  /** What the process wrote so far (its last lines). */
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once stderr or stdout holds a line matching `re`. */
  waitFor(re: RegExp): Promise<string>;
  stop(): Promise<void>;
}

/** A tiny random Llama model folder (the servers' base model in these tests). */
export function writeTinyModel(dir: string, options: Partial<RandomModelOptions> = {}): string {
  writeRandomModel(dir, { family: 'llama', seed: 77, ...options });
  return dir;
}

/** A port nobody listens on right now (the child binds it a moment later). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts `loraserve serve …args` on a free port and resolves once /health answers (or rejects if it exits first). */
export async function spawnServer(args: string[], options: { env?: NodeJS.ProcessEnv; preload?: string[] } = {}): Promise<ChildServer> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const node = [
    '--import',
    'tsx',
    ...(options.preload ?? []).flatMap((file) => ['--import', file]),
    join(ROOT, 'src/cli/main.ts'),
    'serve',
    '--port',
    String(port),
    ...args,
  ];
  const proc = spawn(process.execPath, node, { cwd: ROOT, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  // The last lines of each stream; watchers see every line as it arrives.
  const lines = { out: [] as string[], err: [] as string[] };
  const watchers: Array<{ re: RegExp; resolve: (line: string) => void }> = [];
  const collect = (stream: NodeJS.ReadableStream, into: string[]) => {
    let partial = '';
    stream.on('data', (d: Buffer) => {
      const parts = (partial + d.toString('utf8')).split('\n');
      partial = parts.pop()!;
      for (const line of parts) {
        into.push(line);
        for (const w of watchers.filter((w) => w.re.test(line))) {
          watchers.splice(watchers.indexOf(w), 1);
          w.resolve(line);
        }
      }
      if (into.length > MAX_LINES) into.splice(0, into.length - MAX_LINES);
    });
  };
  collect(proc.stdout!, lines.out);
  collect(proc.stderr!, lines.err);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const died = (what: string) =>
    exited.then(({ code, signal }) =>
      Promise.reject(new Error(`server exited (${code ?? signal}) before ${what}:\n${lines.err.slice(-20).join('\n')}`)),
    );
  const waitFor = (re: RegExp) => {
    const seen = [...lines.out, ...lines.err].find((l) => re.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return Promise.race([new Promise<string>((resolve) => watchers.push({ re, resolve })), died(`printing ${re}`)]);
  };
  let gone = false;
  void exited.then(() => (gone = true));
  const healthy = (async () => {
    while (!gone) {
      const ok = await fetch(`${url}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  await Promise.race([healthy, died('answering /health')]);
  return {
    proc,
    url,
    exited,
    waitFor,
    stdout: () => lines.out.join('\n'),
    stderr: () => lines.err.join('\n'),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}
