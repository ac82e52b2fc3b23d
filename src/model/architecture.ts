import type { LinearModule, ModelDims } from './dims.js';
import type { GraphOps } from './graph-ops.js';

/**
 * One model family, declared: how its config.json reads, which linear layers it has (the LoRA
 * target namespace, named as PEFT names them), and its forward pass in terms of `GraphOps`.
 */
export interface Architecture {
  family: string;
  /** `architectures[0]` values of config.json this file serves. */
  hfArchitectures: readonly string[];
  /** Name of the layer list in module paths (`h` in GPT-2, `layers` in Llama): PEFT's layers_pattern. */
  layersPattern: string;
  parseDims(config: Record<string, unknown>): ModelDims;
  linears(dims: ModelDims): LinearModule[];
  /** Final hidden state of each row's last position, before the LM head. */
  forward(f: GraphOps, dims: ModelDims): string;
  /** LM head weight name (the embedding when tied). */
  lmHead(dims: ModelDims): string;
}

export function configNumber(config: Record<string, unknown>, key: string, fallback?: number): number {
  const v = config[key];
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if ((v === undefined || v === null) && fallback !== undefined) return fallback;
  throw new TypeError(`config.json: "${key}" must be a number`);
}
