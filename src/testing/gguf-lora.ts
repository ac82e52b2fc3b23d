import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AdapterUnsupportedFeatureError, AdapterWeightsError } from '../errors.js';
import { parseSafetensorsBuffer, type HfModel } from '../model/index.js';
import { parseAdapter, resolveTargets, CONFIG_FILE, WEIGHTS_FILE } from '../lora/index.js';
import { gguf, writeGguf, type GgufTensor } from './gguf-file.js';
import { ggufArchitecture, ggufTensorName, permuteRopeRows, ropePermutationHeads } from './gguf-names.js';

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Writes a PEFT LoRA adapter as a llama.cpp LoRA GGUF, as convert_lora_to_gguf.py does:
 * general.type = adapter, adapter.type = lora, adapter.lora.alpha, and per adapted weight
 * `<gguf weight name>.lora_a` (PEFT's lora_A [r, in] as it is, GGUF dims [in, r]) and `.lora_b`
 * (lora_B [out, r], GGUF dims [r, out]). llama.cpp scales each pair by alpha / r, r read from
 * lora_b; where PEFT's scale differs from that (rsLoRA, alpha_pattern) the ratio is folded into
 * lora_b, which the Python converter does not do. The adapter is validated by the same parser
 * the server uses first.
 */
export function writeGgufLora(adapterDir: string, model: HfModel, path: string): { alpha: number; modules: number } {
  const arch = ggufArchitecture(model);
  const configText = readFileSync(join(adapterDir, CONFIG_FILE), 'utf8');
  const bytes = readFileSync(join(adapterDir, WEIGHTS_FILE));
  const parsed = parseAdapter(configText, bytes, model, Number.MAX_SAFE_INTEGER);
  const file = parseSafetensorsBuffer(bytes, WEIGHTS_FILE);
  const keys = [...file.header.tensors.keys()];
  const read = (module: string, which: 'lora_A' | 'lora_B') => {
    const pattern = new RegExp(`^base_model\\.model\\.${escapeRegExp(module)}\\.${which}(?:\\.[^.]+)?\\.weight$`);
    const key = keys.find((k) => pattern.test(k));
    if (!key) throw new AdapterWeightsError(`${WEIGHTS_FILE} has no ${which} weight for "${module}"`);
    return file.readF32(key);
  };
  const alpha = parsed.config.loraAlpha;
  const targets = new Map(resolveTargets(parsed.config, model).map((t) => [t.module.name, t]));
  const tensors: GgufTensor[] = [];
  for (const [name, slot] of parsed.modules) {
    if (slot.bias)
      throw new AdapterUnsupportedFeatureError(`"${name}" carries a trained bias; llama.cpp's LoRA files have none`, { param: 'bias' });
    const t = targets.get(name)!;
    const { inFeatures, outFeatures } = t.module;
    const A = read(name, 'lora_A');
    let B = read(name, 'lora_B');
    const correction = (t.scale * t.rank) / alpha;
    if (correction !== 1) B = B.map((v) => v * correction);
    const heads = ropePermutationHeads(arch, model, name);
    if (heads !== null) B = permuteRopeRows(B, heads, t.rank);
    const base = ggufTensorName(arch, t.module.weight)!;
    tensors.push(
      {
        name: `${base}.lora_a`,
        shape: [t.rank, inFeatures],
        type: 'F32',
        data: () => new Uint8Array(A.buffer, A.byteOffset, A.byteLength),
      },
      {
        name: `${base}.lora_b`,
        shape: [outFeatures, t.rank],
        type: 'F32',
        data: () => new Uint8Array(B.buffer, B.byteOffset, B.byteLength),
      },
    );
  }
  writeGguf(
    path,
    [
      ['general.architecture', gguf.str(arch)],
      ['general.type', gguf.str('adapter')],
      ['general.name', gguf.str(adapterDir.split(/[\\/]/).filter(Boolean).pop() ?? 'adapter')],
      ['adapter.type', gguf.str('lora')],
      ['adapter.lora.alpha', gguf.f32(alpha)],
    ],
    tensors,
  );
  return { alpha, modules: parsed.modules.size };
}
