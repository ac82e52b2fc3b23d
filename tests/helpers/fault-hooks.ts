/**
 * Test-only fault injection for a server child process, loaded with
 * `node --import tsx --import ./tests/helpers/fault-hooks.ts src/cli/main.ts serve …` and driven by
 * environment variables. Serving code has no hooks of its own: these wrap what it calls.
 *
 * - LORASERVE_TEST_GATE=1: every forward pass waits until the process gets SIGUSR2, so requests
 *   stay in flight for exactly as long as a test wants (no timing involved).
 * - LORASERVE_TEST_PAUSE=<adapter>:<point>,…: the adapter store stops forever at that point of a
 *   write or delete of that adapter and prints `PAUSED <adapter> <point>` on stderr, for the test
 *   to kill -9 the process there (one process can hold several adapters at different points). Points:
 *   `write` (upload validated, nothing on disk yet), `rename-old` (new files written and fsynced,
 *   the old folder not yet moved away), `rename-new` (old folder moved away, new not yet renamed
 *   in), `rm-old` (new version in place, old one not yet removed), `delete-rename`, `delete-rm`.
 */
import fsp from 'node:fs/promises';
import { basename } from 'node:path';
import { syncBuiltinESMExports } from 'node:module';
import { Engine } from '../../src/engine/engine.js';
import { gateForward } from './gate.js';

if (process.env.LORASERVE_TEST_GATE === '1') {
  const gate = gateForward(Engine.prototype);
  process.on('SIGUSR2', () => gate.open());
}

const pauses = new Map(
  (process.env.LORASERVE_TEST_PAUSE ?? '')
    .split(',')
    .filter(Boolean)
    .map((p) => p.split(':') as [string, string]),
);
if (pauses.size) {
  /** The adapter a store path belongs to, and which of the store's names it is. */
  const parse = (path: unknown) => {
    const m = /^\.(upload|old|deleted)-(.+)-[0-9a-f]{12}(?:\.\d+@.+)?$/.exec(basename(String(path)));
    return m ? { kind: m[1]!, name: m[2]! } : { kind: 'final', name: basename(String(path)) };
  };
  const pause = (name: string, point: string | null): Promise<never> | null => {
    if (point === null || pauses.get(name) !== point) return null;
    process.stderr.write(`PAUSED ${name} ${point}\n`);
    return new Promise<never>(() => {});
  };
  const { mkdir, rename, rm } = fsp;
  fsp.mkdir = (async (path: Parameters<typeof mkdir>[0], options?: Parameters<typeof mkdir>[1]) => {
    const p = parse(path);
    return pause(p.name, p.kind === 'upload' ? 'write' : null) ?? mkdir(path, options);
  }) as typeof mkdir;
  fsp.rename = async (from, to) => {
    const f = parse(from);
    const t = parse(to);
    const point = t.kind === 'old' ? 'rename-old' : f.kind === 'upload' ? 'rename-new' : t.kind === 'deleted' ? 'delete-rename' : null;
    return pause(f.name, point) ?? rename(from, to);
  };
  fsp.rm = async (path, options) => {
    const p = parse(path);
    return pause(p.name, p.kind === 'old' ? 'rm-old' : p.kind === 'deleted' ? 'delete-rm' : null) ?? rm(path, options);
  };
  syncBuiltinESMExports();
}
