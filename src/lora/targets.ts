import { AdapterConfigError } from '../errors.js';
import type { HfModel, LinearModule } from '../model/index.js';
import { execAll, RegexBudgetError } from '../util/bounded-regex.js';
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

/**
 * The config's regexes (target_modules, exclude_modules, layers_pattern, rank/alpha pattern keys)
 * matched against the base model's module names, each pattern once over all names under a time
 * budget: an adapter config cannot stall the server with a pathological pattern.
 */
class ModuleRegexes {
  private readonly results = new Map<string, Map<string, RegExpExecArray | null>>();
  constructor(private readonly names: string[]) {}

  exec(source: string, name: string, field: string): RegExpExecArray | null {
    let byName = this.results.get(source);
    if (!byName) {
      let matches: Array<RegExpExecArray | null>;
      try {
        matches = execAll(source, this.names);
      } catch (err) {
        if (err instanceof RegexBudgetError)
          throw new AdapterConfigError(
            `adapter_config.json: a "${field}" pattern takes too long to match the module names (catastrophic backtracking); simplify it`,
            { param: field, cause: err },
          );
        throw err;
      }
      byName = new Map(this.names.map((n, i) => [n, matches[i]!]));
      this.results.set(source, byName);
    }
    return byName.get(name) ?? null;
  }
}

const fullMatch = (re: ModuleRegexes, pattern: string, s: string, field: string) => re.exec(`^(?:${pattern})$`, s, field) !== null;
const listMatch = (list: string[], name: string) => list.some((t) => name === t || name.endsWith(`.${t}`));

/** PEFT's check_target_module_exists, including its layers_to_transform rules. */
function isTargeted(c: PeftLoraConfig, re: ModuleRegexes, targets: string[] | string, name: string): boolean {
  if (targets === 'all-linear') return true;
  if (typeof targets === 'string') return fullMatch(re, targets, name, 'target_modules');
  if (targets.includes(name)) return true;
  if (!listMatch(targets, name)) return false;
  const wanted = c.layersToTransform;
  if (wanted === null || (Array.isArray(wanted) && wanted.length === 0)) return true;
  let match: RegExpMatchArray | null = null;
  if (!c.layersPattern || c.layersPattern.length === 0) match = name.match(/^.*\.[^.]*\.(\d+)\./);
  else for (const p of c.layersPattern) if ((match = re.exec(`^.*\\.${p}\\.(\\d+)\\.`, name, 'layers_pattern'))) break;
  if (!match) return false;
  const layer = Number(match[1]);
  return typeof wanted === 'number' ? layer === wanted : wanted.includes(layer);
}

function isExcluded(c: PeftLoraConfig, re: ModuleRegexes, name: string): boolean {
  const ex = c.excludeModules;
  if (ex === null) return false;
  return typeof ex === 'string' ? fullMatch(re, ex, name, 'exclude_modules') : listMatch(ex, name);
}

/** PEFT's get_pattern_key: the first rank/alpha pattern key matching `(.*\.)?(key)$`. */
function patternValue(re: ModuleRegexes, patterns: Record<string, number>, name: string, field: string): number | undefined {
  for (const [key, value] of Object.entries(patterns)) if (re.exec(`^(?:.*\\.)?(?:${key})$`, name, field)) return value;
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
  const re = new ModuleRegexes(model.linears.map((m) => m.name));
  for (const module of model.linears) {
    if (!isTargeted(c, re, targets, module.name) || isExcluded(c, re, module.name)) continue;
    const rank = patternValue(re, c.rankPattern, module.name, 'rank_pattern') ?? c.r;
    const alpha = patternValue(re, c.alphaPattern, module.name, 'alpha_pattern') ?? c.loraAlpha;
    out.push({ module, rank, scale: loraScale(alpha, rank, c.useRslora) });
  }
  return out;
}
