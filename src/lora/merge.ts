/**
 * `loraserve merge`: folds an adapter into its base, W' = W + s·B·A (for GPT-2's Conv1D, whose W is
 * stored [in, out], the transpose), and trained biases into the base biases, then writes a complete
 * Hugging Face folder that serves on its own. The adapter goes through the same validation and
 * slot conversion as serving, so merged and unmerged outputs agree by construction of one path.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { copyModelSideFiles, loadHfModel, writeSafetensors, type TensorToWrite } from '../model/index.js';
import { parseAdapter } from './adapter.js';
import { readAdapterFolder } from './peft-format.js';

export async function mergeAdapter(modelDir: string, adapterDir: string, outDir: string): Promise<{ mergedModules: number }> {
  const model = loadHfModel(modelDir);
  try {
    const files = readAdapterFolder(adapterDir);
    const adapter = parseAdapter(files.config, files.weights, model, Number.MAX_SAFE_INTEGER);
    const tensors: Record<string, TensorToWrite> = {};
    for (const name of model.weights.names()) tensors[name] = { dtype: 'F32', shape: model.weights.ref(name).shape, data: model.weights.readF32(name) };
    for (const m of model.linears) {
      const t = adapter.modules.get(m.name);
      if (!t) continue;
      const w = tensors[m.weight]!.data as Float32Array;
      // ΔW[o, i] = Σ_k (s·Bᵀ)[k, o] · A[k, i]; stored at [o, i] (Linear) or [i, o] (Conv1D).
      for (let o = 0; o < m.outFeatures; o++) {
        for (let i = 0; i < m.inFeatures; i++) {
          let delta = 0;
          for (let k = 0; k < t.rank; k++) delta += t.b[k * m.outFeatures + o]! * t.a[k * m.inFeatures + i]!;
          w[m.fanInFanOut ? i * m.outFeatures + o : o * m.inFeatures + i]! += delta;
        }
      }
      if (t.bias) {
        const biasName = m.bias ?? `${m.name}.bias`;
        const base = tensors[biasName]?.data as Float32Array | undefined;
        tensors[biasName] = { dtype: 'F32', shape: [m.outFeatures], data: base ? base.map((v, i) => v + t.bias![i]!) : Float32Array.from(t.bias) };
      }
    }
    mkdirSync(outDir, { recursive: true });
    await writeSafetensors(join(outDir, 'model.safetensors'), tensors, { format: 'pt' });
    copyModelSideFiles(model.dir, outDir);
    return { mergedModules: adapter.modules.size };
  } finally {
    model.weights.close();
  }
}
