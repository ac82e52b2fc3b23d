import { AdapterConfigError, AdapterUnsupportedFeatureError } from '../errors.js';
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../util/strict-json.js';

/** A PEFT LoRA `adapter_config.json`, normalised. Field names follow PEFT's LoraConfig. */
export interface PeftLoraConfig {
  r: number;
  loraAlpha: number;
  useRslora: boolean;
  /** null: PEFT's default targets for the model type. */
  targetModules: string[] | string | null;
  excludeModules: string[] | string | null;
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
  layersToTransform: number[] | number | null;
  layersPattern: string[] | null;
  fanInFanOut: boolean;
  bias: 'none' | 'lora_only' | 'all';
  /** lora_B carries a bias of its own (PEFT `lora_bias`). */
  loraBias: boolean;
  /** DoRA: each adapted layer's output is rescaled per feature by its magnitude vector (PEFT `use_dora`). */
  useDora: boolean;
  baseModelNameOrPath: string | null;
  loraDropout: number;
  taskType: string | null;
}

/** PEFT's scaling of B·A: alpha / r, or alpha / √r with rsLoRA. */
export function loraScale(alpha: number, r: number, useRslora: boolean): number {
  return useRslora ? alpha / Math.sqrt(r) : alpha / r;
}

const fail = (msg: string, field: string): never => {
  throw new AdapterConfigError(`adapter_config.json: ${msg}`, { param: field });
};

function stringOrList(v: unknown, field: string): string[] | string | null {
  if (v === null || v === undefined) return null;
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v as string[];
  return fail(`"${field}" must be a string (regex), a list of module names, or null`, field);
}

function numberMap(v: unknown, field: string): Record<string, number> {
  if (v === null || v === undefined) return {};
  if (typeof v !== 'object' || Array.isArray(v)) return fail(`"${field}" must be an object of pattern → number`, field);
  for (const [k, n] of Object.entries(v as Record<string, unknown>)) {
    if (typeof n !== 'number' || !(n > 0)) fail(`"${field}"["${k}"] must be a positive number`, field);
    try {
      new RegExp(k);
    } catch {
      fail(`"${field}" key "${k}" is not a valid regular expression`, field);
    }
  }
  return v as Record<string, number>;
}

export function parsePeftConfig(text: string): PeftLoraConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (cause) {
    throw new AdapterConfigError(`adapter_config.json is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('must be a JSON object', '');
  if (nestsDeeperThan(raw, MAX_JSON_DEPTH)) fail(`nests deeper than ${MAX_JSON_DEPTH} levels`, '');
  const c = raw as Record<string, unknown>;
  const peftType = c.peft_type ?? 'LORA';
  if (peftType !== 'LORA') {
    throw new AdapterUnsupportedFeatureError(
      `adapter_config.json: peft_type "${String(peftType)}" is not supported; only LORA adapters are served`,
      { param: 'peft_type' },
    );
  }
  if (c.task_type !== undefined && c.task_type !== null && c.task_type !== 'CAUSAL_LM') {
    fail(`task_type "${String(c.task_type)}" cannot be served by a causal LM server; expected CAUSAL_LM`, 'task_type');
  }
  if (c.use_dora === true && c.lora_bias === true) {
    // PEFT's LoraConfig refuses this pair too: DoRA's rescaling has no defined place for lora_B's bias.
    throw new AdapterUnsupportedFeatureError(
      'adapter_config.json: lora_bias=true is not supported together with use_dora=true (PEFT refuses it as well)',
      { param: 'lora_bias' },
    );
  }
  if (Array.isArray(c.modules_to_save) && c.modules_to_save.length > 0) {
    throw new AdapterUnsupportedFeatureError(
      `adapter_config.json: modules_to_save ${JSON.stringify(c.modules_to_save)} is not supported: fully trained modules cannot be swapped per request`,
      { param: 'modules_to_save' },
    );
  }
  for (const field of ['use_qalora', 'use_bdlora'] as const) {
    if (c[field] === true) throw new AdapterUnsupportedFeatureError(`adapter_config.json: ${field} is not supported`, { param: field });
  }
  const r = c.r ?? 8;
  if (typeof r !== 'number' || !Number.isInteger(r) || r <= 0) fail('"r" must be a positive integer', 'r');
  const alpha = c.lora_alpha ?? 8;
  if (typeof alpha !== 'number' || !(alpha > 0)) fail('"lora_alpha" must be a positive number', 'lora_alpha');
  const bias = c.bias ?? 'none';
  if (bias !== 'none' && bias !== 'lora_only' && bias !== 'all')
    fail(`"bias" must be "none", "lora_only" or "all", not ${JSON.stringify(bias)}`, 'bias');
  let layers: number[] | number | null = null;
  if (c.layers_to_transform !== undefined && c.layers_to_transform !== null) {
    const l = c.layers_to_transform;
    if (Number.isInteger(l)) layers = l as number;
    else if (Array.isArray(l) && l.every((x) => Number.isInteger(x))) layers = l as number[];
    else fail('"layers_to_transform" must be an integer or a list of integers', 'layers_to_transform');
  }
  const lp = stringOrList(c.layers_pattern, 'layers_pattern');
  const targets = stringOrList(c.target_modules, 'target_modules');
  if (typeof targets === 'string' && targets !== 'all-linear') {
    try {
      new RegExp(targets);
    } catch {
      fail(`"target_modules" regex ${JSON.stringify(targets)} is invalid`, 'target_modules');
    }
  }
  return {
    r: r as number,
    loraAlpha: alpha as number,
    useRslora: c.use_rslora === true,
    targetModules: targets,
    excludeModules: stringOrList(c.exclude_modules, 'exclude_modules'),
    rankPattern: numberMap(c.rank_pattern, 'rank_pattern'),
    alphaPattern: numberMap(c.alpha_pattern, 'alpha_pattern'),
    layersToTransform: layers,
    layersPattern: lp === null ? null : typeof lp === 'string' ? [lp] : lp,
    fanInFanOut: c.fan_in_fan_out === true,
    bias: bias as PeftLoraConfig['bias'],
    loraBias: c.lora_bias === true,
    useDora: c.use_dora === true,
    baseModelNameOrPath: typeof c.base_model_name_or_path === 'string' ? c.base_model_name_or_path : null,
    loraDropout: typeof c.lora_dropout === 'number' ? c.lora_dropout : 0,
    taskType: typeof c.task_type === 'string' ? c.task_type : null,
  };
}
