import type { GraphBuilder } from './graph-builder.js';
import { TensorDataType } from './onnx-proto.js';
import type { QuantCacheEntry } from './quant-cache.js';
import { quantizedShapes, type QuantSettings, type QuantizedWeight } from './quantize.js';

/**
 * MatMulNBits' `accuracy_level`: 0 computes in float32 on dequantized weights; 4 quantizes each
 * block of the activations to int8 and accumulates in int32 (ORT falls back to float32 where the
 * CPU lacks that kernel).
 */
export type AccuracyLevel = 0 | 4;

/** Names of the three constant initializers of one quantized weight, plus its sizes. */
export interface QuantizedInitializers extends QuantSettings {
  n: number;
  k: number;
  data: string;
  scales: string;
  zeroPoints: string;
}

/** A quantized weight held in memory, carried inside the graph itself. */
export function constQuantized(g: GraphBuilder, q: QuantizedWeight): QuantizedInitializers {
  const shapes = quantizedShapes(q.n, q.k, q);
  const bytes = (a: Float32Array | Uint8Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return {
    n: q.n,
    k: q.k,
    bits: q.bits,
    blockSize: q.blockSize,
    data: g.constTensor(TensorDataType.UINT8, shapes.data, q.data),
    scales: g.constTensor(TensorDataType.FLOAT, shapes.scales, bytes(q.scales)),
    zeroPoints: g.constTensor(TensorDataType.UINT8, shapes.zeroPoints, q.zeroPoints),
  };
}

/** A quantized weight of the disk cache, read in place from the cache file by ORT. */
export function cachedQuantized(g: GraphBuilder, entry: QuantCacheEntry, weight: string): QuantizedInitializers {
  const refs = entry.weights.get(weight);
  if (!refs) throw new Error(`weight "${weight}" is not in the quantization cache`);
  const external = (dataType: typeof TensorDataType.UINT8 | typeof TensorDataType.FLOAT, info: typeof refs.data) =>
    g.external(info.name, dataType, info.shape, entry.file, info.fileOffset, info.byteLength);
  return {
    n: refs.n,
    k: refs.k,
    bits: refs.bits,
    blockSize: refs.blockSize,
    data: external(TensorDataType.UINT8, refs.data),
    scales: external(TensorDataType.FLOAT, refs.scales),
    zeroPoints: external(TensorDataType.UINT8, refs.zeroPoints),
  };
}

/**
 * y = x @ dequant(W)ᵀ (+ bias): x `[..., K]` → `[..., N]`. B must be a constant initializer: ORT
 * prepacks it into its kernel's layout once at load (fed as an input it would repack every run).
 */
export function matMulNBits(
  g: GraphBuilder,
  x: string,
  w: QuantizedInitializers,
  bias: string | null,
  accuracyLevel: AccuracyLevel,
): string {
  // Inputs: A, B, scales, zero_points, g_idx (deprecated, left empty), bias.
  const inputs = bias ? [x, w.data, w.scales, w.zeroPoints, '', bias] : [x, w.data, w.scales, w.zeroPoints];
  return g.op(
    'MatMulNBits',
    inputs,
    { K: w.k, N: w.n, bits: w.bits, block_size: w.blockSize, accuracy_level: accuracyLevel },
    'com.microsoft',
  );
}
