import { encodeSafetensors } from '../../src/model/index.js';

/** Builds a safetensors file from a raw header object and data length, bypassing the writer's checks. */
export function rawSafetensors(header: unknown, dataBytes: number, headerText?: string | Uint8Array): Uint8Array {
  const json = headerText instanceof Uint8Array ? headerText : Buffer.from(headerText ?? JSON.stringify(header), 'utf8');
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

/** One file per safetensors rule, each breaking exactly that rule; the key names the rule. */
export function brokenSafetensors(): Record<string, { bytes: Uint8Array; message: RegExp }> {
  const ok = encodeSafetensors({ t: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } });
  const withLength = (n: bigint) => {
    const b = ok.slice();
    new DataView(b.buffer).setBigUint64(0, n, true);
    return b;
  };
  const t = (dtype: unknown, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
  return {
    'file shorter than 8 bytes': { bytes: new Uint8Array(5), message: /shorter than the 8-byte header length/ },
    'header length over the limit': { bytes: withLength(200_000_000n), message: /exceeds the 100000000-byte limit/ },
    'header runs past end of file': { bytes: withLength(BigInt(ok.length)), message: /runs past the end/ },
    'header not UTF-8': { bytes: rawSafetensors(null, 0, Uint8Array.from([0x7b, 0x22, 0xff, 0x22, 0x7d])), message: /not valid UTF-8/ },
    'header not JSON': { bytes: rawSafetensors(null, 0, '{"a": [1,}'), message: /not valid JSON/ },
    'header not an object': { bytes: rawSafetensors(null, 0, '{'), message: /not valid JSON/ },
    'header nested too deep': {
      bytes: rawSafetensors(null, 0, `{"a":${'['.repeat(100)}${']'.repeat(100)}}`),
      message: /nesting deeper than 64 levels/,
    },
    'header does not start with {': { bytes: rawSafetensors(null, 0, '[1, 2]'), message: /does not start with "\{"/ },
    'duplicate tensor name': {
      bytes: rawSafetensors(
        null,
        8,
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
      ),
      message: /duplicate key "a"/,
    },
    'unknown dtype': { bytes: rawSafetensors({ a: t('F31', [1], [0, 4]) }, 4), message: /unknown dtype "F31"/ },
    'negative shape': { bytes: rawSafetensors({ a: t('F32', [-1], [0, 4]) }, 4), message: /shape must be a list of non-negative integers/ },
    'bad data_offsets': { bytes: rawSafetensors({ a: t('F32', [1], [0]) }, 4), message: /data_offsets must be two/ },
    'offsets reversed': { bytes: rawSafetensors({ a: t('F32', [0], [4, 0]) }, 4), message: /end before they begin/ },
    'shape × dtype ≠ byte length': {
      bytes: rawSafetensors({ a: t('F32', [3], [0, 8]) }, 8),
      message: /is 12 bytes but data_offsets span 8/,
    },
    'size overflow': { bytes: rawSafetensors({ a: t('F64', [2 ** 40, 2 ** 40], [0, 8]) }, 8), message: /overflows/ },
    'overlapping tensors': { bytes: rawSafetensors({ a: t('F32', [2], [0, 8]), b: t('F32', [1], [4, 8]) }, 8), message: /overlaps/ },
    'gap between tensors': {
      bytes: rawSafetensors({ a: t('F32', [1], [0, 4]), b: t('F32', [1], [8, 12]) }, 12),
      message: /gap in the data/,
    },
    'data does not cover the file': {
      bytes: rawSafetensors({ a: t('F32', [1], [0, 4]) }, 8),
      message: /cover 4 bytes of data but the file holds 8/,
    },
    'metadata not strings': {
      bytes: rawSafetensors({ __metadata__: { a: 1 }, b: t('F32', [1], [0, 4]) }, 4),
      message: /__metadata__\["a"\] is not a string/,
    },
  };
}
