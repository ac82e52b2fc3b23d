/**
 * The useful arithmetic of a generation run, for `hetero_gemm_efficiency`: only the weight matmuls
 * count, each 2 FLOP per weight per token row. Attention's score and value products (which grow
 * with the cached length), norms, activations and the softmax are left out, so the figure is a floor.
 */
import type { HfModel } from '../model/index.js';
import type { ParsedAdapter } from '../lora/index.js';

export interface MatmulParams {
  /** Every linear layer of the base (attention and MLP projections of all layers), applied to every row fed. */
  body: number;
  /** The LM head (hidden × vocab, tied or not), applied only to the rows whose logits are read: one per generated token. */
  head: number;
  /** LoRA A and B of the one adapter a request uses, applied to every row fed like the body. */
  lora: number;
}

export function matmulParams(model: Pick<HfModel, 'linears' | 'dims'>, adapter: Pick<ParsedAdapter, 'modules'> | null): MatmulParams {
  let lora = 0;
  for (const m of adapter?.modules.values() ?? []) lora += m.a.length + m.b.length;
  return {
    body: model.linears.reduce((sum, l) => sum + l.inFeatures * l.outFeatures, 0),
    head: model.dims.hidden * model.dims.vocabSize,
    lora,
  };
}

export interface GenerationWork {
  requests: number;
  promptTokens: number;
  generatedTokens: number;
}

/**
 * 2 · params · rows over the run: each request feeds its prompt and all but its last generated
 * token through the body (prefill included), and reads logits once per generated token.
 */
export function usefulFlops(p: MatmulParams, w: GenerationWork): number {
  if (w.generatedTokens < 1) return 0;
  const fed = w.promptTokens + w.generatedTokens - 1;
  return 2 * w.requests * ((p.body + p.lora) * fed + p.head * w.generatedTokens);
}
