import { GraphBuilder } from './graph-builder.js';
import { GraphOps, type KvResidency, type LoraLayout } from './graph-ops.js';
import type { HfModel } from './hf-model.js';
import { encodeModel } from './onnx-proto.js';
import type { BaseQuantization } from './base-quantization.js';

export interface BuiltGraph {
  /** Encoded ONNX model whose initializers are external data in `externalDir`. */
  bytes: Uint8Array;
  /**
   * The folder ORT resolves external data against: the model folder, or above it when the
   * quantization cache lies elsewhere. Weights are referenced in place, never copied.
   */
  externalDir: string;
  /** The weight whose rows the caller feeds as `inputs_embeds`. */
  tokenEmbedding: string;
}

export const OPSET = 17;

/**
 * The decoder graph for one model: one step of the batch, with KV cache (on the host or the device,
 * see `KvResidency`), optional LoRA slots and optionally quantized base weights.
 */
export function buildGraph(
  model: HfModel,
  lora: LoraLayout | null,
  loraModules?: ReadonlySet<string>,
  quant: BaseQuantization | null = null,
  kv: KvResidency = 'host',
): BuiltGraph {
  const g = new GraphBuilder();
  const ops = new GraphOps(g, model.dims, model.weights, model.linears, lora, loraModules, quant, kv);
  const hidden = model.arch.forward(ops, model.dims);
  ops.logits(hidden, model.arch.lmHead(model.dims));
  if (!ops.tokenEmbedding) throw new Error(`architecture ${model.arch.family} embeds no tokens`);
  return {
    bytes: encodeModel(g.graph(`loraserve-${model.arch.family}`), OPSET, 'loraserve'),
    externalDir: g.externalDir ?? model.dir,
    tokenEmbedding: ops.tokenEmbedding,
  };
}
