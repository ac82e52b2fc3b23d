import { join } from 'node:path';
import type { LinearModule } from './dims.js';
import type { HfModel } from './hf-model.js';
import type { BaseQuantization, QuantizeMode } from './base-quantization.js';
import type { AccuracyLevel } from './matmul-nbits.js';
import { quantizedWeights } from './quant-cache.js';

/**
 * Which weights run quantized, decided once for every architecture:
 * - every linear layer of every block, and the LM head (the tied embedding when tied): together
 *   they are all of the GEMM work, and a float32 head alone kept ~0.6× of the float32 resident
 *   memory on a Qwen2.5-0.5B shape (its vocabulary is 27% of the parameters);
 * - not the token or position embeddings: a lookup reads a few rows, straight from the
 *   safetensors file, so a float table costs no resident memory and no compute worth saving;
 * - not norms or biases (a bias is added by the quantized node itself, in float32);
 * - not LoRA: adapters stay float32 and their delta is added to the quantized base output.
 * Block 32 along K with a zero point per block; accuracy_level 4 (int8 activations, int32
 * accumulation), which measured faster than level 0 for both widths and is the only fast 8-bit
 * kernel (see src/bench/matmul-nbits.ts).
 */
export const QUANT_BLOCK_SIZE = 32;
export const QUANT_ACCURACY_LEVEL: AccuracyLevel = 4;

/** The LM head as a linear layer: `[vocab, hidden]` like torch's Linear, whichever weight holds it. */
export function lmHeadLinear(model: HfModel): LinearModule {
  const { hidden, vocabSize, layers } = model.dims;
  return {
    name: 'lm_head',
    layer: layers,
    inFeatures: hidden,
    outFeatures: vocabSize,
    weight: model.arch.lmHead(model.dims),
    bias: null,
    fanInFanOut: false,
  };
}

export function defaultQuantCacheDir(modelDir: string): string {
  return join(modelDir, '.loraserve-cache');
}

/** Quantizes the base model's linear layers and LM head, or reads them back from the disk cache. */
export async function quantizeBase(
  model: HfModel,
  mode: QuantizeMode,
  cacheDir = defaultQuantCacheDir(model.dir),
): Promise<BaseQuantization> {
  const bits = mode === 'int8' ? 8 : 4;
  const entry = await quantizedWeights(
    model.weights,
    [...model.linears, lmHeadLinear(model)],
    { bits, blockSize: QUANT_BLOCK_SIZE },
    cacheDir,
  );
  return { mode, accuracyLevel: QUANT_ACCURACY_LEVEL, entry };
}
