import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Engine, type EngineOptions } from '../engine/index.js';
import type { ParsedAdapter } from '../lora/index.js';
import { decodeStepCost } from './measure.js';

/** Where one decode step's time goes, by ONNX operator type (ORT's own profiler). */
export interface StepProfile {
  rows: number;
  cached: number;
  /** Mean wall time of a step as ORT timed it, ms. */
  step_ms: number;
  /** Nodes the step runs. */
  nodes: number;
  /** The step's time outside any kernel (the executor's per-node work, thread hand-offs), ms. */
  between_kernels_ms: number;
  /** Per operator type: kernel ms per step and nodes per step, largest first. */
  ops: Array<{ op: string; ms: number; nodes: number }>;
}

interface ProfileEvent {
  cat?: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string };
}

/**
 * Profiles decode steps, one profile per case: `slots.length` rows (row i on adapter slot slots[i])
 * with `cached` positions each, on an engine built from `options` whose slots 1.. hold `adapters`,
 * read back from the file ORT writes when the engine closes.
 */
export async function profileDecodeSteps(
  options: EngineOptions,
  adapters: readonly ParsedAdapter[],
  cases: ReadonlyArray<{ slots: readonly number[]; cached: number }>,
  workDir: string,
): Promise<StepProfile[]> {
  const profiles: StepProfile[] = [];
  for (const [i, { slots, cached }] of cases.entries()) {
    const prefix = join(workDir, `step-profile-${i}`);
    const engine = await Engine.create({ ...options, profilePrefix: prefix });
    adapters.forEach((a, s) => engine.slots!.write(1 + s, a));
    await decodeStepCost(engine, [...slots], cached, 4);
    await engine.close();
    profiles.push(summarize(readProfile(prefix), slots.length, cached));
  }
  return profiles;
}

/** The events of the one profile file written under `prefix` (removed once read). */
function readProfile(prefix: string): ProfileEvent[] {
  const dir = dirname(prefix);
  const file = readdirSync(dir).find((f) => f.startsWith(`${basename(prefix)}_`) && f.endsWith('.json'));
  if (!file) throw new Error(`ORT wrote no profile under ${prefix}`);
  const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as ProfileEvent[];
  rmSync(join(dir, file));
  return events;
}

/**
 * Per-step figures from a profile: every step has the same shape, so the runs after the first (ORT's
 * first run allocates its buffers) are averaged.
 */
export function summarize(events: readonly ProfileEvent[], rows: number, cached: number): StepProfile {
  const all = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  const runs = all.length > 1 ? all.slice(1) : all;
  const from = runs[0]?.ts ?? 0;
  const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.ts >= from);
  const perRun = (us: number) => +(us / runs.length / 1000).toFixed(2);
  const byOp = new Map<string, { us: number; count: number }>();
  for (const k of kernels) {
    const op = k.args?.op_name ?? 'unknown';
    const entry = byOp.get(op) ?? { us: 0, count: 0 };
    entry.us += k.dur;
    entry.count++;
    byOp.set(op, entry);
  }
  const stepUs = runs.reduce((sum, r) => sum + r.dur, 0);
  const kernelUs = kernels.reduce((sum, k) => sum + k.dur, 0);
  return {
    rows,
    cached,
    step_ms: perRun(stepUs),
    nodes: Math.round(kernels.length / runs.length),
    between_kernels_ms: perRun(stepUs - kernelUs),
    ops: [...byOp]
      .map(([op, { us, count }]) => ({ op, ms: perRun(us), nodes: Math.round(count / runs.length) }))
      .sort((a, b) => b.ms - a.ms),
  };
}
