import {
  AdapterBaseMismatchError,
  AdapterRankTooLargeError,
  AdapterUnsupportedFeatureError,
  AdapterWeightsError,
  LoraServeError,
} from '../errors.js';
import { parseSafetensorsBuffer, type HfModel, type LinearModule } from '../model/index.js';
import { summarizeAdapter, type AdapterSummary } from './adapter-summary.js';
import { parsePeftConfig, type PeftLoraConfig } from './peft-config.js';
import { KEY_PREFIX as PREFIX } from './peft-format.js';
import { resolveTargets, type TargetedModule } from './targets.js';

/** One adapted linear layer in the layout the engine's slots take. */
export interface SlotModule {
  rank: number;
  /** A: [rank, in], lora_A.weight as PEFT stores it. */
  a: Float32Array;
  /** s·Bᵀ: [rank, out], the scale folded in (PEFT stores lora_B.weight as [out, rank]). */
  b: Float32Array;
  /** Added to the layer's output: trained bias − base bias, plus s·lora_B.bias. [out] or null. */
  bias: Float32Array | null;
  /**
   * DoRA's output scale g = m / ‖W + s·B A‖ per output feature (the norm over the input axis of the
   * [out, in] weight), [out]; null for plain LoRA. The layer computes y = g ⊙ (W x + s·B A x) + b.
   */
  dora: Float32Array | null;
}

/** A validated adapter, ready to be written into a slot. */
export interface ParsedAdapter {
  config: PeftLoraConfig;
  summary: AdapterSummary;
  /** Keyed by the base model's module name. */
  modules: Map<string, SlotModule>;
  /** Host bytes these tensors take (the host cache is bounded by this). */
  bytes: number;
}

/** `<module>.lora_A[.<adapter name>].weight` and friends. */
const LORA_KEY = /^(.+)\.(lora_A|lora_B)(?:\.([^.]+))?\.(weight|bias)$/;

/** `<module>.lora_magnitude_vector[.<adapter name>][.weight]`: PEFT ≥ 0.12 writes `.weight`, older versions none. */
const MAGNITUDE_KEY = /^(.+)\.lora_magnitude_vector(?:\.(?!weight$)[^.]+)?(?:\.weight)?$/;

type AdapterFile = ReturnType<typeof parseSafetensorsBuffer>;

type ModuleTensors = { A?: string; B?: string; loraBBias?: string; bias?: string; magnitude?: string };

function classifyKeys(names: Iterable<string>, byName: Map<string, LinearModule>): Map<string, ModuleTensors> {
  const modules = new Map<string, ModuleTensors>();
  const entry = (m: string) => modules.get(m) ?? modules.set(m, {}).get(m)!;
  for (const key of names) {
    if (!key.startsWith(PREFIX))
      throw new AdapterWeightsError(`adapter_model.safetensors: key "${key}" does not start with "${PREFIX}" as PEFT keys do`);
    const rest = key.slice(PREFIX.length);
    if (/\.lora_embedding_[AB]\b/.test(rest)) {
      throw new AdapterUnsupportedFeatureError(
        `adapter_model.safetensors: "${key}" adapts an embedding layer; only linear layers can be adapted`,
        { param: 'target_modules' },
      );
    }
    const mag = MAGNITUDE_KEY.exec(rest);
    if (mag) {
      if (!byName.has(mag[1]!)) {
        throw new AdapterUnsupportedFeatureError(
          `adapter_model.safetensors: "${key}" is a DoRA magnitude vector of "${mag[1]}", which is not a linear layer; DoRA is served on linear layers only`,
          { param: 'use_dora' },
        );
      }
      entry(mag[1]!).magnitude = key;
      continue;
    }
    const m = LORA_KEY.exec(rest);
    if (m) {
      const [, module, which, , kind] = m as unknown as [string, string, 'lora_A' | 'lora_B', string | undefined, 'weight' | 'bias'];
      if (!byName.has(module))
        throw new AdapterBaseMismatchError(
          `adapter adapts "${module}", which the base model does not have: is this adapter for another base model?`,
        );
      const e = entry(module);
      if (which === 'lora_A' && kind === 'weight') e.A = key;
      else if (which === 'lora_B' && kind === 'weight') e.B = key;
      else if (which === 'lora_B') e.loraBBias = key;
      else throw new AdapterWeightsError(`adapter_model.safetensors: unexpected key "${key}"`);
      continue;
    }
    const b = /^(.+?)(?:\.base_layer)?\.bias$/.exec(rest);
    if (b && byName.has(b[1]!)) {
      entry(b[1]!).bias = key;
      continue;
    }
    if (b)
      throw new AdapterUnsupportedFeatureError(
        `adapter_model.safetensors: trained bias "${key}" belongs to a layer that is not linear; bias="all" is supported for linear layers only`,
        { param: 'bias' },
      );
    throw new AdapterWeightsError(`adapter_model.safetensors: unexpected key "${key}"`);
  }
  return modules;
}

function transpose(src: Float32Array, rows: number, cols: number, scale = 1): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = src[i * cols + j]! * scale;
  return out;
}

/**
 * DoRA's per-output scale, as PEFT's DoraLinearLayer computes it at inference: the base weight
 * read as [out, in] (transposed when fan_in_fan_out), plus s·B A, its L2 norm over the input axis
 * (`torch.linalg.norm(weight, dim=1)`), and g = m / norm. In float64; b is s·Bᵀ [rank, out].
 */
function doraScale(
  magnitude: Float32Array,
  weight: Float32Array,
  a: Float32Array,
  b: Float32Array,
  m: LinearModule,
  rank: number,
): Float32Array {
  const { inFeatures: nIn, outFeatures: nOut } = m;
  const g = new Float32Array(nOut);
  const row = new Float64Array(nIn);
  for (let o = 0; o < nOut; o++) {
    for (let i = 0; i < nIn; i++) row[i] = m.fanInFanOut ? weight[i * nOut + o]! : weight[o * nIn + i]!;
    for (let k = 0; k < rank; k++) {
      const bk = b[k * nOut + o]!;
      if (bk === 0) continue;
      for (let i = 0; i < nIn; i++) row[i]! += bk * a[k * nIn + i]!;
    }
    let sq = 0;
    for (let i = 0; i < nIn; i++) sq += row[i]! * row[i]!;
    g[o] = magnitude[o]! / Math.sqrt(sq);
  }
  return g;
}

/**
 * Validates a PEFT adapter against the base model and converts it to slot tensors. Every error
 * names what is wrong: the field, the key, the module or the shape. Like vLLM's
 * `from_local_checkpoint` → `from_lora_tensors`: read the files, check the tensors against the
 * config, then check and convert layer by layer (so the first bad layer is the one reported).
 */
export function parseAdapter(
  configText: string,
  weights: Uint8Array,
  model: HfModel,
  maxRank: number,
  loraModules?: ReadonlySet<string>,
): ParsedAdapter {
  const config = parsePeftConfig(configText);
  const file = readWeights(weights);
  const byName = new Map(model.linears.map((m) => [m.name, m]));
  const present = classifyKeys(file.header.tensors.keys(), byName);
  const targeted = resolveTargets(config, model);
  checkTensorsMatchConfig(config, present, targeted);
  const tensors = new AdapterTensors(file, model);
  const modules = new Map<string, SlotModule>();
  for (const target of targeted) {
    const keys = checkLayer(target, present.get(target.module.name), tensors, maxRank, loraModules);
    modules.set(target.module.name, convertLayer(target, keys, config, tensors));
  }
  // Trained biases of linear layers that carry no LoRA (bias="all").
  for (const [name, t] of present) {
    if (modules.has(name) || !t.bias) continue;
    if (loraModules && !loraModules.has(name)) {
      throw new AdapterUnsupportedFeatureError(
        `adapter trains the bias of "${name}", which this server does not serve LoRA on; restart it with that module in --lora-modules`,
        { param: 'bias' },
      );
    }
    const bias = tensors.biasDelta(t.bias, byName.get(name)!);
    modules.set(name, { rank: 0, a: new Float32Array(0), b: new Float32Array(0), bias, dora: null });
  }
  return { config, modules, bytes: hostBytes(modules.values()), summary: summarizeAdapter(config, targeted) };
}

/** adapter_model.safetensors parsed; a file that is not one is an AdapterWeightsError. */
function readWeights(weights: Uint8Array): AdapterFile {
  try {
    return parseSafetensorsBuffer(weights, 'adapter_model.safetensors');
  } catch (err) {
    throw err instanceof LoraServeError ? err : new AdapterWeightsError('adapter_model.safetensors could not be read', { cause: err });
  }
}

/** The file's tensors against adapter_config.json: what it targets, use_dora and bias. */
function checkTensorsMatchConfig(config: PeftLoraConfig, present: Map<string, ModuleTensors>, targeted: TargetedModule[]): void {
  if (targeted.length === 0)
    throw new AdapterBaseMismatchError(`target_modules ${JSON.stringify(config.targetModules)} matches no linear layer of the base model`, {
      param: 'target_modules',
    });
  const targetedNames = new Set(targeted.map((t) => t.module.name));
  for (const [name, t] of present) {
    if ((t.A || t.B || t.magnitude) && !targetedNames.has(name)) {
      throw new AdapterWeightsError(`adapter_model.safetensors has LoRA weights for "${name}", which adapter_config.json does not target`, {
        param: 'target_modules',
      });
    }
  }
  if (!config.useDora) {
    const withMagnitude = [...present].find(([, t]) => t.magnitude);
    if (withMagnitude)
      throw new AdapterWeightsError(
        `adapter_model.safetensors holds a DoRA magnitude vector for "${withMagnitude[0]}" but use_dora is false`,
        { param: 'use_dora' },
      );
  }
  if (config.bias === 'none') {
    const withBias = [...present].find(([, t]) => t.bias);
    if (withBias)
      throw new AdapterWeightsError(`adapter_model.safetensors holds a trained bias for "${withBias[0]}" but bias is "none"`, {
        param: 'bias',
      });
  }
}

/** A targeted layer's keys, lora_A and lora_B both present. */
type LayerKeys = ModuleTensors & { A: string; B: string };

/** A targeted layer is served here, has both LoRA matrices, and their shapes fit the base layer and the rank. */
function checkLayer(
  { module, rank }: TargetedModule,
  t: ModuleTensors | undefined,
  tensors: AdapterTensors,
  maxRank: number,
  loraModules?: ReadonlySet<string>,
): LayerKeys {
  if (loraModules && !loraModules.has(module.name)) {
    throw new AdapterUnsupportedFeatureError(
      `adapter targets "${module.name}", which this server does not serve LoRA on; restart it with that module in --lora-modules`,
      { param: 'target_modules' },
    );
  }
  if (!t?.A || !t.B)
    throw new AdapterWeightsError(`adapter_model.safetensors lacks lora_${t?.A ? 'B' : 'A'}.weight for targeted module "${module.name}"`);
  if (rank > maxRank) {
    throw new AdapterRankTooLargeError(
      `rank ${rank} of "${module.name}" exceeds this server's max LoRA rank ${maxRank}; restart with a larger --max-rank or retrain with r ≤ ${maxRank}`,
      { param: 'r' },
    );
  }
  const aShape = tensors.shape(t.A);
  const bShape = tensors.shape(t.B);
  const [aRows, aCols] = aShape as [number, number];
  const [bRows, bCols] = bShape as [number, number];
  if (aShape.length !== 2 || aCols !== module.inFeatures || bShape.length !== 2 || bRows !== module.outFeatures) {
    throw new AdapterBaseMismatchError(
      `"${module.name}": lora_A ${JSON.stringify(aShape)} / lora_B ${JSON.stringify(bShape)} do not fit the base layer (in ${module.inFeatures}, out ${module.outFeatures}): is this adapter for another base model?`,
    );
  }
  if (aRows !== rank || bCols !== rank) {
    throw new AdapterWeightsError(
      `"${module.name}": lora_A has rank ${aRows} and lora_B rank ${bCols}, but the config gives rank ${rank} (r / rank_pattern)`,
      { param: 'r' },
    );
  }
  return { ...t, A: t.A, B: t.B };
}

/** One checked layer's tensors in slot layout: A, s·Bᵀ, the bias it adds, DoRA's scale. */
function convertLayer({ module, rank, scale }: TargetedModule, t: LayerKeys, config: PeftLoraConfig, tensors: AdapterTensors): SlotModule {
  let bias = t.bias ? tensors.biasDelta(t.bias, module) : null;
  if (t.loraBBias) {
    if (!config.loraBias)
      throw new AdapterWeightsError(`adapter_model.safetensors has "${t.loraBBias}" but lora_bias is false`, { param: 'lora_bias' });
    const lb = tensors.read(t.loraBBias);
    if (lb.length !== module.outFeatures)
      throw new AdapterWeightsError(`"${t.loraBBias}" has ${lb.length} values, expected ${module.outFeatures}`);
    bias ??= new Float32Array(module.outFeatures);
    for (let i = 0; i < lb.length; i++) bias[i]! += scale * lb[i]!;
  }
  const a = tensors.read(t.A);
  const b = transpose(tensors.read(t.B), module.outFeatures, rank, scale);
  let dora: Float32Array | null = null;
  if (config.useDora) {
    if (!t.magnitude)
      throw new AdapterWeightsError(
        `adapter_model.safetensors lacks the DoRA magnitude vector (lora_magnitude_vector) of "${module.name}", but use_dora is true`,
        { param: 'use_dora' },
      );
    const m = tensors.read(t.magnitude);
    if (m.length !== module.outFeatures)
      throw new AdapterWeightsError(`"${t.magnitude}" has ${m.length} values, the layer has ${module.outFeatures} outputs`);
    dora = doraScale(m, tensors.baseWeight(module), a, b, module, rank);
  }
  return { rank, a, b, bias, dora };
}

/** The adapter's tensors as float32, and the base model's ones they are combined with. */
class AdapterTensors {
  constructor(
    private readonly file: AdapterFile,
    private readonly model: HfModel,
  ) {}

  shape(key: string): number[] {
    return this.file.header.tensors.get(key)!.shape;
  }

  read(key: string): Float32Array {
    try {
      return this.file.readF32(key);
    } catch (cause) {
      throw new AdapterWeightsError(`adapter_model.safetensors: "${key}" is not a floating-point tensor`, { cause });
    }
  }

  baseWeight(module: LinearModule): Float32Array {
    return this.model.weights.readF32(module.weight);
  }

  /** Trained bias minus the base layer's bias (zero when the base has none): what a slot adds. */
  biasDelta(key: string, module: LinearModule): Float32Array {
    const trained = this.read(key);
    if (trained.length !== module.outFeatures)
      throw new AdapterBaseMismatchError(`"${key}" has ${trained.length} values, the layer has ${module.outFeatures} outputs`);
    const base = module.bias ? this.model.weights.readF32(module.bias) : new Float32Array(module.outFeatures);
    return trained.map((v, i) => v - base[i]!);
  }
}

/** Host bytes the slot tensors take. */
function hostBytes(modules: Iterable<SlotModule>): number {
  let bytes = 0;
  for (const m of modules) bytes += (m.a.length + m.b.length + (m.bias?.length ?? 0) + (m.dora?.length ?? 0)) * 4;
  return bytes;
}
