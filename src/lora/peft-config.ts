import { Kind, Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
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

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Names = Nullable(Type.Union([Type.String(), Type.Array(Type.String())]));
const Patterns = Nullable(Type.Record(Type.String(), Type.Number()));

/**
 * The types of the `adapter_config.json` fields PEFT's LoraConfig defines and this server reads or
 * refuses, checked before any of their meaning is; other fields (PEFT grows new ones) pass untouched.
 */
const PeftConfigShape = Type.Object({
  peft_type: Nullable(Type.String()),
  task_type: Nullable(Type.String()),
  base_model_name_or_path: Nullable(Type.String()),
  revision: Nullable(Type.String()),
  inference_mode: Type.Boolean(),
  r: Type.Integer(),
  lora_alpha: Type.Number(),
  lora_dropout: Type.Number(),
  target_modules: Names,
  exclude_modules: Names,
  fan_in_fan_out: Type.Boolean(),
  bias: Type.String(),
  use_rslora: Type.Boolean(),
  modules_to_save: Nullable(Type.Array(Type.String())),
  init_lora_weights: Type.Union([Type.Boolean(), Type.String()]),
  layers_to_transform: Nullable(Type.Union([Type.Integer(), Type.Array(Type.Integer())])),
  layers_pattern: Names,
  rank_pattern: Patterns,
  alpha_pattern: Patterns,
  use_dora: Type.Boolean(),
  lora_bias: Type.Boolean(),
  use_qalora: Type.Boolean(),
});
type PeftConfigFields = Partial<Static<typeof PeftConfigShape>>;

/** "an integer or null", "a list of strings": what a field's schema accepts, in words. */
function expected(schema: TSchema): string {
  switch (schema[Kind]) {
    case 'Union':
      return (schema.anyOf as TSchema[]).map(expected).join(' or ');
    case 'Array':
      return `a list of ${expected(schema.items as TSchema).replace(/^an? /, '')}s`;
    case 'Record':
      return 'an object of pattern → number';
    case 'Null':
      return 'null';
    case 'Integer':
      return 'an integer';
    default:
      return `a ${String(schema[Kind]).toLowerCase()}`;
  }
}

const isBias = (b: string): b is PeftLoraConfig['bias'] => b === 'none' || b === 'lora_only' || b === 'all';

/** A JSON value's type in words (never the value itself: it may be anything). */
const jsonType = (v: unknown) =>
  v === null
    ? 'null'
    : Array.isArray(v)
      ? 'a list'
      : typeof v === 'object'
        ? 'an object'
        : typeof v === 'number' && !Number.isInteger(v)
          ? 'a fractional number'
          : `a ${typeof v}`;

/** Every read field has its PEFT type, or a 422 names the first that does not and the type it needs. */
function checkFieldTypes(c: Record<string, unknown>): PeftConfigFields {
  for (const [field, schema] of Object.entries(PeftConfigShape.properties)) {
    if (c[field] !== undefined && !Value.Check(schema, c[field]))
      fail(`"${field}" must be ${expected(schema)} (got ${jsonType(c[field])})`, field);
  }
  return c as PeftConfigFields;
}

function numberMap(v: Record<string, number> | null | undefined, field: string): Record<string, number> {
  for (const [k, n] of Object.entries(v ?? {})) {
    if (!(n > 0)) fail(`"${field}"["${k}"] must be a positive number`, field);
    try {
      new RegExp(k);
    } catch {
      fail(`"${field}" key "${k}" is not a valid regular expression`, field);
    }
  }
  return v ?? {};
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
  const c = checkFieldTypes(raw as Record<string, unknown>);
  const peftType = c.peft_type ?? 'LORA';
  if (peftType !== 'LORA') {
    throw new AdapterUnsupportedFeatureError(
      `adapter_config.json: peft_type ${JSON.stringify(peftType)} is not supported; only LORA adapters are served`,
      { param: 'peft_type' },
    );
  }
  if (c.task_type !== undefined && c.task_type !== null && c.task_type !== 'CAUSAL_LM') {
    fail(`task_type ${JSON.stringify(c.task_type)} cannot be served by a causal LM server; expected CAUSAL_LM`, 'task_type');
  }
  if (c.use_dora === true && c.lora_bias === true) {
    // PEFT's LoraConfig refuses this pair too: DoRA's rescaling has no defined place for lora_B's bias.
    throw new AdapterUnsupportedFeatureError(
      'adapter_config.json: lora_bias=true is not supported together with use_dora=true (PEFT refuses it as well)',
      { param: 'lora_bias' },
    );
  }
  if (c.modules_to_save && c.modules_to_save.length > 0) {
    throw new AdapterUnsupportedFeatureError(
      `adapter_config.json: modules_to_save ${JSON.stringify(c.modules_to_save)} is not supported: fully trained modules cannot be swapped per request`,
      { param: 'modules_to_save' },
    );
  }
  if (c.use_qalora === true)
    throw new AdapterUnsupportedFeatureError('adapter_config.json: use_qalora is not supported', { param: 'use_qalora' });
  // Newer PEFT only; its type is not pinned here, so only its switched-on form is refused.
  if ((raw as Record<string, unknown>).use_bdlora === true)
    throw new AdapterUnsupportedFeatureError('adapter_config.json: use_bdlora is not supported', { param: 'use_bdlora' });
  const r = c.r ?? 8;
  if (r <= 0) fail('"r" must be a positive integer', 'r');
  const alpha = c.lora_alpha ?? 8;
  if (!(alpha > 0)) fail('"lora_alpha" must be a positive number', 'lora_alpha');
  const bias = c.bias ?? 'none';
  if (!isBias(bias)) return fail(`"bias" must be "none", "lora_only" or "all", not ${JSON.stringify(bias)}`, 'bias');
  const lp = c.layers_pattern ?? null;
  const targets = c.target_modules ?? null;
  if (typeof targets === 'string' && targets !== 'all-linear') {
    try {
      new RegExp(targets);
    } catch {
      fail(`"target_modules" regex ${JSON.stringify(targets)} is invalid`, 'target_modules');
    }
  }
  return {
    r,
    loraAlpha: alpha,
    useRslora: c.use_rslora === true,
    targetModules: targets,
    excludeModules: c.exclude_modules ?? null,
    rankPattern: numberMap(c.rank_pattern, 'rank_pattern'),
    alphaPattern: numberMap(c.alpha_pattern, 'alpha_pattern'),
    layersToTransform: c.layers_to_transform ?? null,
    layersPattern: lp === null ? null : typeof lp === 'string' ? [lp] : lp,
    fanInFanOut: c.fan_in_fan_out === true,
    bias,
    loraBias: c.lora_bias === true,
    useDora: c.use_dora === true,
    baseModelNameOrPath: c.base_model_name_or_path ?? null,
    loraDropout: c.lora_dropout ?? 0,
    taskType: c.task_type ?? null,
  };
}
