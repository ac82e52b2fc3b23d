import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadHfModel, type HfModel } from '../../src/model/index.js';
import { peftConfig, writePeftAdapter, resolveTargets, parsePeftConfig, parseAdapter, type ParsedAdapter } from '../../src/lora/index.js';
import type { RefLora } from './reference.js';
import { rng } from './rng.js';

export function tempDir(prefix = 'loraserve-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface TestAdapter {
  dir: string;
  /** What the reference forward applies: module name → A, B, r, scale, trained bias. */
  ref: Map<string, RefLora>;
}

/**
 * Writes a PEFT adapter with random A and B (B non-zero, unlike PEFT's init, so it changes the
 * output) for the config fields given; returns the reference view of it.
 */
export async function writeRandomAdapter(dir: string, model: HfModel, fields: Record<string, unknown>, seed: number): Promise<TestAdapter> {
  const r = rng(seed);
  const config = peftConfig(fields);
  const parsed = parsePeftConfig(JSON.stringify(config));
  const targets = resolveTargets(parsed, model.linears, String(model.config.model_type));
  const modules = new Map();
  const ref = new Map<string, RefLora>();
  for (const t of targets) {
    const m = t.module;
    const A = r.tensor(t.rank * m.inFeatures, 0.3);
    const B = r.tensor(m.outFeatures * t.rank, 0.3);
    const bias = parsed.bias !== 'none' && m.bias ? r.tensor(m.outFeatures, 0.3) : undefined;
    modules.set(m.name, { A, B, rank: t.rank, inFeatures: m.inFeatures, outFeatures: m.outFeatures, bias });
    ref.set(m.name, { A, B, r: t.rank, scale: t.scale, bias });
  }
  await writePeftAdapter(dir, { config, modules });
  return { dir, ref };
}

export function readAdapter(dir: string, model: HfModel, maxRank = 16): ParsedAdapter {
  return parseAdapter(readFileSync(join(dir, 'adapter_config.json'), 'utf8'), readFileSync(join(dir, 'adapter_model.safetensors')), model, maxRank);
}

export { loadHfModel };
