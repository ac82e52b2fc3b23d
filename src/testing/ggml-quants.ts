import { f32ToF16 } from '../util/half.js';
import type { GgmlType } from './gguf-file.js';

/**
 * ggml's reference quantizers (ggml-quants.c: quantize_row_q8_0_ref, quantize_row_q4_0_ref), in
 * float32 arithmetic like the C code, so a file written here holds what llama.cpp's own tools
 * would write for the same weights.
 */

const QK = 32;
const fr = Math.fround;
/** C's roundf: halves away from zero (Math.round sends -2.5 to -2). */
const roundf = (x: number) => Math.sign(x) * Math.round(Math.abs(x));

/** block_q8_0: f16 scale d = amax/127, then 32 int8 values round(x/d). */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % QK) throw new RangeError(`Q8_0 needs a multiple of ${QK} values; got ${x.length}`);
  const blocks = x.length / QK;
  const out = new Uint8Array(blocks * 34);
  const view = new DataView(out.buffer);
  const d = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[b * QK + j]!));
    d[b] = amax / 127;
    const id = d[b] ? fr(1 / d[b]!) : 0;
    for (let j = 0; j < QK; j++) view.setInt8(b * 34 + 2 + j, roundf(fr(x[b * QK + j]! * id)));
  }
  f32ToF16(d).forEach((h, b) => view.setUint16(b * 34, h, true));
  return out;
}

/**
 * block_q4_0: f16 scale d = max/-8 (max = the value of largest magnitude, sign kept), then 16
 * bytes of nibbles min(15, trunc(x/d + 8.5)): element j in the low nibble of byte j, element
 * j + 16 in its high nibble.
 */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  if (x.length % QK) throw new RangeError(`Q4_0 needs a multiple of ${QK} values; got ${x.length}`);
  const blocks = x.length / QK;
  const out = new Uint8Array(blocks * 18);
  const view = new DataView(out.buffer);
  const d = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = x[b * QK + j]!;
      if (amax < Math.abs(v)) (amax = Math.abs(v)), (max = v);
    }
    d[b] = max / -8;
    const id = d[b] ? fr(1 / d[b]!) : 0;
    for (let j = 0; j < QK / 2; j++) {
      const lo = Math.min(15, Math.trunc(fr(fr(x[b * QK + j]! * id) + 8.5)));
      const hi = Math.min(15, Math.trunc(fr(fr(x[b * QK + QK / 2 + j]! * id) + 8.5)));
      out[b * 18 + 2 + j] = lo | (hi << 4);
    }
  }
  f32ToF16(d).forEach((h, b) => view.setUint16(b * 18, h, true));
  return out;
}

/** The bytes of `x` (rows of the last dimension) in a ggml type. */
export function encodeAs(x: Float32Array, type: GgmlType): Uint8Array {
  switch (type) {
    case 'F32':
      return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    case 'F16': {
      const h = f32ToF16(x);
      return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
    }
    case 'Q8_0':
      return quantizeQ8_0(x);
    case 'Q4_0':
      return quantizeQ4_0(x);
  }
}
