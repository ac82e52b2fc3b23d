/**
 * The base model's quantization as the graph sees it. A leaf of its own, so that the graph code
 * (graph-ops, build-graph) can name it without importing the quantizer, which reads the model.
 */
import type { AccuracyLevel } from './matmul-nbits.js';
import type { QuantCacheEntry } from './quant-cache.js';

export type QuantizeMode = 'int8' | 'int4';
export const QUANTIZE_MODES: readonly QuantizeMode[] = ['int8', 'int4'];

/** What a graph needs to run the base model quantized. */
export interface BaseQuantization {
  mode: QuantizeMode;
  accuracyLevel: AccuracyLevel;
  /** Every quantized weight, by source weight name (block linears and the LM head). */
  entry: QuantCacheEntry;
}
