import type { HfModel } from '../model/index.js';
import { parsePeftConfig, type PeftLoraConfig } from './peft-config.js';
import { resolveTargets, type TargetedModule } from './targets.js';

/** What an adapter's config amounts to against a base model: the facts the API reports. */
export interface AdapterSummary {
  r: number;
  loraAlpha: number;
  useRslora: boolean;
  useDora: boolean;
  bias: PeftLoraConfig['bias'];
  /** Distinct module names adapted (the last path component), e.g. ["q_proj", "v_proj"]. */
  targetModules: string[];
  /** Largest rank over the adapted modules (rank_pattern may raise some). */
  maxRank: number;
  adaptedLayers: number;
  baseModelNameOrPath: string | null;
}

export function summarizeAdapter(config: PeftLoraConfig, targeted: readonly TargetedModule[]): AdapterSummary {
  return {
    r: config.r,
    loraAlpha: config.loraAlpha,
    useRslora: config.useRslora,
    useDora: config.useDora,
    bias: config.bias,
    targetModules: [...new Set(targeted.map((t) => t.module.name.split('.').pop()!))],
    maxRank: Math.max(0, ...targeted.map((t) => t.rank)),
    adaptedLayers: targeted.length,
    baseModelNameOrPath: config.baseModelNameOrPath,
  };
}

/** The summary from `adapter_config.json` alone, without reading the weights (listings). */
export function summarizeAdapterConfig(configText: string, model: Pick<HfModel, 'linears' | 'config' | 'arch'>): AdapterSummary {
  const config = parsePeftConfig(configText);
  return summarizeAdapter(config, resolveTargets(config, model));
}
