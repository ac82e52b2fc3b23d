import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../model/index.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { CONFIG_FILE, KEY_PREFIX, WEIGHTS_FILE } from './peft-format.js';

export interface PeftAdapterFiles {
  /** adapter_config.json fields as PEFT writes them (snake_case). */
  config: Record<string, unknown>;
  /** Per module name: lora_A.weight [r, in], lora_B.weight [out, r], optional trained bias [out] and DoRA magnitude [out]. */
  modules: Map<
    string,
    {
      A: Float32Array;
      B: Float32Array;
      rank: number;
      inFeatures: number;
      outFeatures: number;
      bias?: Float32Array;
      magnitude?: Float32Array;
    }
  >;
}

/** Fills PEFT's LoraConfig defaults around the fields given, as `save_pretrained` writes them. */
export function peftConfig(fields: Record<string, unknown>): Record<string, unknown> {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: null,
    r: 8,
    lora_alpha: 8,
    lora_dropout: 0,
    target_modules: null,
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: false,
    use_dora: false,
    modules_to_save: null,
    rank_pattern: {},
    alpha_pattern: {},
    layers_to_transform: null,
    layers_pattern: null,
    init_lora_weights: true,
    inference_mode: true,
    ...fields,
  };
}

/** Writes `adapter_config.json` + `adapter_model.safetensors` with PEFT's key names. */
export async function writePeftAdapter(dir: string, files: PeftAdapterFiles): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, m] of files.modules) {
    tensors[`${KEY_PREFIX}${name}.lora_A.weight`] = { dtype: 'F32', shape: [m.rank, m.inFeatures], data: m.A };
    tensors[`${KEY_PREFIX}${name}.lora_B.weight`] = { dtype: 'F32', shape: [m.outFeatures, m.rank], data: m.B };
    if (m.bias) tensors[`${KEY_PREFIX}${name}.bias`] = { dtype: 'F32', shape: [m.outFeatures], data: m.bias };
    if (m.magnitude)
      tensors[`${KEY_PREFIX}${name}.lora_magnitude_vector.weight`] = { dtype: 'F32', shape: [m.outFeatures], data: m.magnitude };
  }
  await writeSafetensors(join(dir, WEIGHTS_FILE), tensors);
  await writeFileAtomic(join(dir, CONFIG_FILE), JSON.stringify(files.config, null, 2));
}
