import type { QuantizedWeight } from '../../src/model/quantize.js';

/** Reads MatMulNBits' layout back into a float `[N, K]` weight: w = (q − zero_point) · scale. */
export function dequantize(q: QuantizedWeight): Float32Array {
  const out = new Float32Array(q.n * q.k);
  const zpRow = Math.ceil((q.kBlocks * q.bits) / 8);
  const nibble = (byte: number, high: boolean) => (high ? byte >> 4 : byte & 15);
  for (let n = 0; n < q.n; n++) {
    for (let k = 0; k < q.k; k++) {
      const b = Math.floor(k / q.blockSize);
      const j = k % q.blockSize;
      const byte = q.data[(n * q.kBlocks + b) * q.blobSize + (q.bits === 8 ? j : j >> 1)]!;
      const zpByte = q.zeroPoints[n * zpRow + (q.bits === 8 ? b : b >> 1)]!;
      const value = q.bits === 8 ? byte : nibble(byte, (j & 1) === 1);
      const zp = q.bits === 8 ? zpByte : nibble(zpByte, (b & 1) === 1);
      out[n * q.k + k] = (value - zp) * q.scales[n * q.kBlocks + b]!;
    }
  }
  return out;
}

/** y[m] = x[m] @ wᵀ (+ bias) in float64, w `[N, K]`. */
export function matmulRef(x: Float32Array, w: Float32Array, m: number, k: number, n: number, bias?: Float32Array): Float64Array {
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let o = 0; o < n; o++) {
      let acc = bias ? bias[o]! : 0;
      for (let j = 0; j < k; j++) acc += x[i * k + j]! * w[o * k + j]!;
      y[i * n + o] = acc;
    }
  }
  return y;
}
