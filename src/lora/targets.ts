import type { HfModel, LinearModule } from '../model/index.js';
import { loraScale, type PeftLoraConfig } from './peft-config.js';

/** PEFT's default target_modules when a config leaves them null, by model_type. */
const DEFAULT_TARGETS: Record<string, string[]> = {
  gpt2: ['c_attn'],
  llama: ['q_proj', 'v_proj'],
  mistral: ['q_proj', 'v_proj'],
  qwen2: ['q_proj', 'v_proj'],
};

/** The linear layers a server-side module list names ("all-linear", or names matched like PEFT's list). */
export function selectModules(linears: LinearModule[], modules: readonly string[] | 'all-linear'): LinearModule[] {
  return modules === 'all-linear' ? linears : linears.filter((m) => listMatch([...modules], m.name));
}

const fullMatch = (pattern: string, s: string) => new RegExp(`^(?:${pattern})$`).test(s);
const listMatch = (list: string[], name: string) => list.some((t) => name === t || name.endsWith(`.${t}`));

/** PEFT's check_target_module_exists, including its layers_to_transform rules. */
function isTargeted(c: PeftLoraConfig, targets: string[] | string, name: string): boolean {
  if (targets === 'all-linear') return true;
  if (typeof targets === 'string') return fullMatch(targets, name);
  if (targets.includes(name)) return true;
  if (!listMatch(targets, name)) return false;
  const wanted = c.layersToTransform;
  if (wanted === null || (Array.isArray(wanted) && wanted.length === 0)) return true;
  let match: RegExpMatchArray | null = null;
  if (!c.layersPattern || c.layersPattern.length === 0) match = name.match(/^.*\.[^.]*\.(\d+)\./);
  else for (const p of c.layersPattern) if ((match = name.match(new RegExp(`^.*\\.${p}\\.(\\d+)\\.`)))) break;
  if (!match) return false;
  const layer = Number(match[1]);
  return typeof wanted === 'number' ? layer === wanted : wanted.includes(layer);
}

function isExcluded(c: PeftLoraConfig, name: string): boolean {
  const ex = c.excludeModules;
  if (ex === null) return false;
  return typeof ex === 'string' ? fullMatch(ex, name) : listMatch(ex, name);
}

/** PEFT's get_pattern_key: the first rank/alpha pattern key matching `(.*\.)?(key)$`. */
function patternValue(patterns: Record<string, number>, name: string): number | undefined {
  for (const [key, value] of Object.entries(patterns)) if (new RegExp(`^(?:.*\\.)?(?:${key})$`).test(name)) return value;
  return undefined;
}

export interface TargetedModule {
  module: LinearModule;
  rank: number;
  /** `loraScale` of its alpha and rank. */
  scale: number;
}

/** The base model's linear layers this adapter config adapts, with their rank and scale. */
export function resolveTargets(c: PeftLoraConfig, model: Pick<HfModel, 'linears' | 'config' | 'arch'>): TargetedModule[] {
  const targets = c.targetModules ?? DEFAULT_TARGETS[String(model.config.model_type ?? model.arch.family)] ?? [];
  const out: TargetedModule[] = [];
  for (const module of model.linears) {
    if (!isTargeted(c, targets, module.name) || isExcluded(c, module.name)) continue;
    const rank = patternValue(c.rankPattern, module.name) ?? c.r;
    const alpha = patternValue(c.alphaPattern, module.name) ?? c.loraAlpha;
    out.push({ module, rank, scale: loraScale(alpha, rank, c.useRslora) });
  }
  return out;
}
