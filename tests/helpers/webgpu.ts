import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const PROBE = join(import.meta.dirname, 'webgpu-probe.ts');

let known: string | null | undefined;

/**
 * Why the WebGPU provider cannot run here (no Vulkan adapter, e.g. no Mesa ≥ 25 lavapipe and no
 * GPU), or null when it can. Probed once, in a child process: a missing adapter can end a process.
 */
export function webgpuUnavailable(): string | null {
  if (known !== undefined) return known;
  const probe = spawnSync(process.execPath, ['--import', 'tsx', PROBE], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  const said = `${probe.stdout}${probe.stderr}`;
  known =
    probe.status === 0 && said.includes('webgpu ok')
      ? null
      : (/Failed to get a WebGPU adapter[^\n]*/.exec(said)?.[0] ?? `probe exited with ${probe.status ?? probe.signal}`);
  return known;
}

/** A test option that skips, saying why, where WebGPU cannot run. */
export function skipWithoutWebgpu(): { skip: string | false } {
  const why = webgpuUnavailable();
  return { skip: why === null ? false : `no WebGPU adapter (${why}); install Mesa ≥ 25 from bookworm-backports (see .ci/run)` };
}
