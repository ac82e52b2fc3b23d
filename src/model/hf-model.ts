import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ModelConfigError } from '../errors.js';
import type { Architecture } from './architecture.js';
import type { LinearModule, ModelDims } from './dims.js';
import { architectureFor } from './registry.js';
import { WeightStore } from './weights.js';

export interface GenerationDefaults {
  eosTokenIds: number[];
  bosTokenId: number | null;
  padTokenId: number | null;
  /**
   * The sampling settings generation_config.json sets (absent fields stay unset); `do_sample: false`
   * reads as temperature 0 (greedy), as in transformers.
   */
  sampling: { temperature?: number; topP?: number; topK?: number; repetitionPenalty?: number; maxNewTokens?: number };
}

/** The sampling fields of a generation_config.json that hold a usable number. */
function samplingDefaults(gen: Record<string, unknown>): GenerationDefaults['sampling'] {
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  const out: GenerationDefaults['sampling'] = {
    temperature: gen.do_sample === false ? 0 : num(gen.temperature),
    topP: num(gen.top_p),
    topK: num(gen.top_k),
    repetitionPenalty: num(gen.repetition_penalty),
    maxNewTokens: num(gen.max_new_tokens),
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined));
}

/** A Hugging Face model folder, parsed and validated; weights stay in their files. */
export interface HfModel {
  dir: string;
  /** The id clients use for the base model: the folder name. */
  id: string;
  config: Record<string, unknown>;
  arch: Architecture;
  dims: ModelDims;
  linears: LinearModule[];
  weights: WeightStore;
  generation: GenerationDefaults;
}

/** Everything of a model folder besides its weights: what a merged or retrained copy carries over. */
const SIDE_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

/** Copies the side files that exist from one model folder into another (not onto themselves). */
export function copyModelSideFiles(fromDir: string, toDir: string): void {
  for (const f of SIDE_FILES) {
    const from = join(fromDir, f);
    const to = join(toDir, f);
    if (existsSync(from) && resolve(from) !== resolve(to)) copyFileSync(from, to);
  }
}

function readJson(path: string): Record<string, unknown> {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8'));
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (cause) {
    throw new ModelConfigError(`${path} is not a valid JSON object`, { cause });
  }
}

const ids = (v: unknown): number[] =>
  Array.isArray(v) ? v.filter((x): x is number => typeof x === 'number') : typeof v === 'number' ? [v] : [];

export function loadHfModel(dir: string): HfModel {
  const abs = resolve(dir);
  const configPath = join(abs, 'config.json');
  if (!existsSync(configPath)) throw new ModelConfigError(`${abs} has no config.json: not a Hugging Face model folder`);
  const config = readJson(configPath);
  const arch = architectureFor(config);
  let dims: ModelDims;
  try {
    dims = arch.parseDims(config);
  } catch (cause) {
    if (cause instanceof TypeError) throw new ModelConfigError(`${configPath}: ${cause.message}`, { cause });
    throw cause;
  }
  if (!Number.isInteger(dims.headDim) || dims.heads % dims.kvHeads !== 0) {
    throw new ModelConfigError(
      `${configPath}: heads (${dims.heads}) must divide evenly by kv heads (${dims.kvHeads}) and hidden size into heads`,
    );
  }
  const genPath = join(abs, 'generation_config.json');
  const gen = existsSync(genPath) ? readJson(genPath) : {};
  const eos = ids(gen.eos_token_id ?? config.eos_token_id);
  const weights = new WeightStore(abs);
  return {
    dir: abs,
    id: basename(abs),
    config,
    arch,
    dims,
    linears: arch.linears(dims),
    weights,
    generation: {
      eosTokenIds: eos,
      bosTokenId: ids(gen.bos_token_id ?? config.bos_token_id)[0] ?? null,
      padTokenId: ids(gen.pad_token_id ?? config.pad_token_id)[0] ?? null,
      sampling: samplingDefaults(gen),
    },
  };
}
