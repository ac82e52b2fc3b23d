/**
 * `loraserve merge`: folds an adapter into its base, W' = W + s·B·A (for GPT-2's Conv1D, whose W is
 * stored [in, out], the transpose), and trained biases into the base biases, then writes a complete
 * Hugging Face folder that serves on its own. A DoRA adapter folds as PEFT merges it, row by output
 * feature: W' = g ⊙ (W + s·B·A), g = m / ‖W + s·B·A‖ (the bias is not scaled). A weighted mix folds
 * its output-space sum, W' = W + Σ wᵢ sᵢ Bᵢ Aᵢ, b' = b + Σ wᵢ (bᵢ − b). The adapters go through the
 * same validation and slot conversion as serving, so merged and unmerged outputs agree.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidRequestError } from '../errors.js';
import { copyModelSideFiles, loadHfModel, writeSafetensors, type TensorToWrite } from '../model/index.js';
import { parseAdapter } from './adapter.js';
import { readAdapterFolder } from './peft-format.js';

/** One adapter folder of a merge and its weight in the mix (1 for a plain merge). */
export interface MergeInput {
  dir: string;
  weight: number;
}

export async function mergeAdapter(
  modelDir: string,
  adapter: string | readonly MergeInput[],
  outDir: string,
): Promise<{ mergedModules: number }> {
  const inputs = typeof adapter === 'string' ? [{ dir: adapter, weight: 1 }] : adapter;
  const model = loadHfModel(modelDir);
  try {
    const parsed = inputs.map(({ dir, weight }) => {
      if (!Number.isFinite(weight)) throw new InvalidRequestError(`the weight of ${dir} is not a finite number`, { param: 'weight' });
      const files = readAdapterFolder(dir);
      return { weight, adapter: parseAdapter(files.config, files.weights, model, Number.MAX_SAFE_INTEGER) };
    });
    if (parsed.some((p) => p.adapter.config.useDora) && (parsed.length > 1 || parsed[0]!.weight !== 1)) {
      throw new InvalidRequestError('a DoRA adapter merges alone at weight 1: its rescaling is not defined inside a weighted mix', {
        param: 'adapter',
      });
    }
    const tensors: Record<string, TensorToWrite> = {};
    for (const name of model.weights.names())
      tensors[name] = { dtype: 'F32', shape: model.weights.ref(name).shape, data: model.weights.readF32(name) };
    const merged = new Set<string>();
    for (const m of model.linears) {
      const at = (o: number, i: number) => (m.fanInFanOut ? i * m.outFeatures + o : o * m.inFeatures + i);
      const w = tensors[m.weight]!.data as Float32Array;
      for (const { weight, adapter: a } of parsed) {
        const t = a.modules.get(m.name);
        if (!t) continue;
        merged.add(m.name);
        // ΔW[o, i] = Σ_k (s·Bᵀ)[k, o] · A[k, i]; stored at [o, i] (Linear) or [i, o] (Conv1D).
        for (let o = 0; o < m.outFeatures; o++) {
          for (let i = 0; i < m.inFeatures; i++) {
            let delta = 0;
            for (let k = 0; k < t.rank; k++) delta += t.b[k * m.outFeatures + o]! * t.a[k * m.inFeatures + i]!;
            w[at(o, i)]! += weight * delta;
          }
        }
        if (t.dora) for (let o = 0; o < m.outFeatures; o++) for (let i = 0; i < m.inFeatures; i++) w[at(o, i)]! *= t.dora[o]!;
        if (t.bias) {
          const biasName = m.bias ?? `${m.name}.bias`;
          const base = (tensors[biasName]?.data as Float32Array | undefined) ?? new Float32Array(m.outFeatures);
          tensors[biasName] = { dtype: 'F32', shape: [m.outFeatures], data: base.map((v, i) => v + weight * t.bias![i]!) };
        }
      }
    }
    mkdirSync(outDir, { recursive: true });
    await writeSafetensors(join(outDir, 'model.safetensors'), tensors, { format: 'pt' });
    copyModelSideFiles(model.dir, outDir);
    return { mergedModules: merged.size };
  } finally {
    model.weights.close();
  }
}
