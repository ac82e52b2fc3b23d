export { loadHfModel, copyModelSideFiles, type HfModel, type GenerationDefaults } from './hf-model.js';
export { buildGraph, type BuiltGraph } from './build-graph.js';
export { quantizeBase } from './quantize-model.js';
export { QUANTIZE_MODES, type BaseQuantization, type QuantizeMode } from './base-quantization.js';
export { INPUT, OUTPUT, type KvResidency, type LoraLayout } from './graph-ops.js';
export type { LinearModule, ModelDims, RopeConfig } from './dims.js';
export { ropeInverseFrequencies } from './dims.js';
export type { Architecture } from './architecture.js';
export { architectureFor } from './registry.js';
export { WeightStore, type WeightRef } from './weights.js';
export {
  SafetensorsFile,
  parseSafetensorsBuffer,
  encodeSafetensors,
  writeSafetensors,
  MAX_HEADER_BYTES,
  type TensorToWrite,
  type Dtype,
} from './safetensors.js';
export {
  KV_GRAPH,
  kvResizeGraph,
  kvCopyRowGraph,
  kvSliceGraph,
  kvWriteGraph,
  LORA_TABLE_GRAPH,
  loraTablesInitGraph,
  loraTablesWriteGraph,
} from './device-graphs.js';
// The single-op MatMulNBits benchmark builds its own one-node graphs.
export { GraphBuilder } from './graph-builder.js';
export { OPSET } from './build-graph.js';
export { constQuantized, matMulNBits, type AccuracyLevel } from './matmul-nbits.js';
export { encodeModel, TensorDataType } from './onnx-proto.js';
export { quantizeWeight, type QuantBits } from './quantize.js';
