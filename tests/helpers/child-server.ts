/**
 * A real `loraserve serve` in a child process: for what only a process can show (signals, exit
 * codes, kill -9, crashes). Optionally loads the test-only fault hooks (fault-hooks.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { writeRandomModel, type RandomModelOptions } from '../../src/model/random-model.js';

const ROOT = join(import.meta.dirname, '..', '..');
const HOOKS = join(import.meta.dirname, 'fault-hooks.ts');

export interface ChildServer {
  proc: ChildProcess;
  url: string;
  /** Everything the process wrote so far. */
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

/** Runs the CLI with `args` and collects its output (for commands that exit by themselves). */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => (stdout += d));
  proc.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => proc.on('close', (code) => resolve({ code, stdout, stderr })));
}

/** Starts `loraserve serve --port 0 …args` and resolves once it listens (or rejects if it exits first). */
export async function spawnServer(args: string[], options: { env?: NodeJS.ProcessEnv; hooks?: boolean } = {}): Promise<ChildServer> {
  const node = ['--import', 'tsx', ...(options.hooks ? ['--import', HOOKS] : []), join(ROOT, 'src/cli/main.ts'), 'serve', '--port', '0', ...args];
  const proc = spawn(process.execPath, node, { cwd: ROOT, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const watchers: Array<{ re: RegExp; resolve: (line: string) => void }> = [];
  const check = () => {
    for (const w of [...watchers]) {
      const line = `${out}\n${err}`.split('\n').find((l) => w.re.test(l));
      if (line !== undefined) {
        watchers.splice(watchers.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  proc.stdout!.on('data', (d) => {
    out += d;
    check();
  });
  proc.stderr!.on('data', (d) => {
    err += d;
    check();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const waitFor = (re: RegExp) =>
    new Promise<string>((resolve, reject) => {
      watchers.push({ re, resolve });
      check();
      void exited.then(({ code, signal }) => reject(new Error(`server exited (${code ?? signal}) before printing ${re}:\n${err.slice(-2000)}`)));
    });
  const listening = await waitFor(/Server listening at http:\/\/127\.0\.0\.1:\d+/);
  const url = /(http:\/\/127\.0\.0\.1:\d+)/.exec(listening)![1]!;
  return {
    proc, url, exited, waitFor,
    stdout: () => out,
    stderr: () => err,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}
