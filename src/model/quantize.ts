/**
 * Block-wise weight-only quantization in the layout of ONNX Runtime's `com.microsoft.MatMulNBits`
 * (docs/ContribOperators.md): each output row is cut along K into blocks of `blockSize` values,
 * and each block gets its own float scale and integer zero point, with
 * `w ≈ (q − zero_point) · scale`.
 */
export type QuantBits = 4 | 8;

export interface QuantSettings {
  bits: QuantBits;
  /** Values per block along K; a power of two ≥ 16 (MatMulNBits' rule). */
  blockSize: number;
}

export interface QuantizedWeight extends QuantSettings {
  /** Output features. */
  n: number;
  /** Input features. */
  k: number;
  kBlocks: number;
  /** Bytes per block: blockSize · bits / 8. */
  blobSize: number;
  /** `uint8 [N, kBlocks, blobSize]`; 4-bit values pack two to a byte, the first in the low nibble. */
  data: Uint8Array;
  /** `float [N · kBlocks]`, row-major. */
  scales: Float32Array;
  /**
   * `uint8`: 8-bit `[N, kBlocks]`; 4-bit packed like B, `[N, ceil(kBlocks / 2)]`, each row padded
   * to whole bytes on its own.
   */
  zeroPoints: Uint8Array;
}

export function checkQuantSettings(s: QuantSettings): void {
  if (s.bits !== 4 && s.bits !== 8) throw new RangeError(`quantization bits must be 4 or 8, got ${s.bits}`);
  if (!Number.isInteger(s.blockSize) || s.blockSize < 16 || (s.blockSize & (s.blockSize - 1)) !== 0) {
    throw new RangeError(`quantization block size must be a power of two ≥ 16, got ${s.blockSize}`);
  }
}

/** Bytes of the packed zero points of one row. */
export function zeroPointRowBytes(kBlocks: number, bits: QuantBits): number {
  return Math.ceil((kBlocks * bits) / 8);
}

/** Shapes of MatMulNBits' B, scales and zero_points inputs for an `[N, K]` weight. */
export function quantizedShapes(
  n: number,
  k: number,
  { bits, blockSize }: QuantSettings,
): { data: number[]; scales: number[]; zeroPoints: number[] } {
  const kBlocks = Math.ceil(k / blockSize);
  return { data: [n, kBlocks, (blockSize * bits) / 8], scales: [n * kBlocks], zeroPoints: [n * zeroPointRowBytes(kBlocks, bits)] };
}

/**
 * Quantizes one linear layer's weight. `weight` holds `n·k` floats, `[N, K]` (torch Linear) or,
 * with `fanInFanOut`, `[K, N]` (GPT-2 Conv1D). Asymmetric min/max per block with zero always in
 * range, as ONNX Runtime's own quantizer does: an all-zero block and the padding of a last block
 * shorter than `blockSize` dequantize to exactly 0.
 */
export function quantizeWeight(
  weight: Float32Array,
  n: number,
  k: number,
  settings: QuantSettings & { fanInFanOut?: boolean },
): QuantizedWeight {
  checkQuantSettings(settings);
  if (weight.length !== n * k) throw new RangeError(`weight has ${weight.length} values, [${n}, ${k}] needs ${n * k}`);
  const { bits, blockSize } = settings;
  const rows = settings.fanInFanOut ? transpose(weight, k, n) : weight;
  const kBlocks = Math.ceil(k / blockSize);
  const blobSize = (blockSize * bits) / 8;
  const qmax = (1 << bits) - 1;
  const zpRow = zeroPointRowBytes(kBlocks, bits);
  const data = new Uint8Array(n * kBlocks * blobSize);
  const scales = new Float32Array(n * kBlocks);
  const zeroPoints = new Uint8Array(n * zpRow);
  const q = new Uint8Array(blockSize);
  for (let row = 0; row < n; row++) {
    const base = row * k;
    for (let b = 0; b < kBlocks; b++) {
      const start = b * blockSize;
      const end = Math.min(start + blockSize, k);
      let lo = 0;
      let hi = 0;
      for (let i = base + start; i < base + end; i++) {
        const v = rows[i]!;
        if (v < lo) lo = v;
        else if (v > hi) hi = v;
      }
      // The scale is stored as float32; quantize against that value so dequantization matches.
      const scale = Math.fround((hi - lo) / qmax);
      const zp = scale === 0 ? 0 : Math.min(qmax, Math.max(0, Math.round(-lo / scale)));
      const inv = scale === 0 ? 0 : 1 / scale;
      for (let j = 0; j < blockSize; j++) {
        const at = start + j;
        const v = at < end ? rows[base + at]! : 0;
        q[j] = Math.min(qmax, Math.max(0, Math.round(v * inv) + zp));
      }
      const blob = (row * kBlocks + b) * blobSize;
      if (bits === 8) data.set(q, blob);
      else for (let j = 0; j < blobSize; j++) data[blob + j] = q[2 * j]! | (q[2 * j + 1]! << 4);
      scales[row * kBlocks + b] = scale;
      if (bits === 8) zeroPoints[row * zpRow + b] = zp;
      else zeroPoints[row * zpRow + (b >> 1)]! |= zp << ((b & 1) * 4);
    }
  }
  return { bits, blockSize, n, k, kBlocks, blobSize, data, scales, zeroPoints };
}

/** `[rows, cols]` → `[cols, rows]`, in tiles so both sides stay in cache. */
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  const T = 32;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(r0 + T, rows);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(c0 + T, cols);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = src[r * cols + c]!;
    }
  }
  return out;
}
