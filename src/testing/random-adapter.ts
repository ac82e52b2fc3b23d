import type { HfModel } from '../model/index.js';
import { rng } from '../util/rng.js';
import { parsePeftConfig, peftConfig, resolveTargets, writePeftAdapter } from '../lora/index.js';

/** An adapted layer as PEFT defines it: y += scale · B (A x), plus a trained bias if any. */
export interface LoraModuleWeights {
  /** lora_A.weight [r, in] */
  A: Float32Array;
  /** lora_B.weight [out, r] */
  B: Float32Array;
  r: number;
  scale: number;
  bias?: Float32Array;
  /** DoRA's lora_magnitude_vector [out] (use_dora adapters only). */
  magnitude?: Float32Array;
}

/**
 * Writes a PEFT adapter with random A and B for the given config fields. B is non-zero (unlike
 * PEFT's initialisation) so the adapter changes the output: fixtures for tests and benchmarks. With
 * `use_dora` each module also gets a random positive magnitude vector.
 */
export async function writeRandomAdapter(
  dir: string,
  model: HfModel,
  fields: Record<string, unknown>,
  seed: number,
  std = 0.3,
): Promise<Map<string, LoraModuleWeights>> {
  const r = rng(seed);
  const config = peftConfig(fields);
  const parsed = parsePeftConfig(JSON.stringify(config));
  const modules = new Map();
  const weights = new Map<string, LoraModuleWeights>();
  for (const t of resolveTargets(parsed, model)) {
    const m = t.module;
    const A = r.tensor(t.rank * m.inFeatures, std);
    const B = r.tensor(m.outFeatures * t.rank, std);
    const bias = parsed.bias !== 'none' && m.bias ? r.tensor(m.outFeatures, std) : undefined;
    // A trained magnitude is positive; 0.5..~2 keeps outputs in a sane range whatever the row norms.
    const magnitude = parsed.useDora ? r.tensor(m.outFeatures, 1).map((v) => 0.5 + Math.abs(v)) : undefined;
    modules.set(m.name, { A, B, rank: t.rank, inFeatures: m.inFeatures, outFeatures: m.outFeatures, bias, magnitude });
    weights.set(m.name, { A, B, r: t.rank, scale: t.scale, bias, magnitude });
  }
  await writePeftAdapter(dir, { config, modules });
  return weights;
}
