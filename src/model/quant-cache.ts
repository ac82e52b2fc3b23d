import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, readSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { EngineError } from '../errors.js';
import { encodeSafetensorsHeader, SafetensorsFile, type TensorInfo, type TensorLayout } from './safetensors.js';
import { writeAt, writeFileAtomic } from '../util/atomic-write.js';
import { checkQuantSettings, quantizedShapes, quantizeWeight, type QuantSettings } from './quantize.js';
import type { LinearModule } from './dims.js';
import type { WeightStore } from './weights.js';

/** Bump when the quantizer's output for the same input changes: older entries stop matching. */
const FORMAT = 'loraserve-quant-1';
/** Bytes read from each end of every source tensor into the cache key. */
const SAMPLE_BYTES = 4096;
/** A temp file this old is a crashed writer's leftover, not another process's write in flight. */
const STALE_TEMP_MS = 60 * 60 * 1000;

/** Where one quantized weight's MatMulNBits inputs lie in the cache file. */
export interface QuantizedRefs extends QuantSettings {
  n: number;
  k: number;
  data: TensorInfo;
  scales: TensorInfo;
  zeroPoints: TensorInfo;
}

export interface QuantCacheEntry {
  /** The safetensors file holding every quantized tensor; graphs reference it in place. */
  file: string;
  /** True when the entry was read back rather than quantized now. */
  reused: boolean;
  /** By source weight name. */
  weights: Map<string, QuantizedRefs>;
}

const tensorNames = (weight: string) => ({ data: `${weight}.qweight`, scales: `${weight}.scales`, zeroPoints: `${weight}.zero_points` });

/**
 * The quantized linear weights of a model, from the disk cache when an entry for these weights and
 * settings is there and intact, otherwise quantized now and written crash-safely (temp, fsync,
 * rename) for the next start. A corrupt, truncated or foreign entry is ignored and replaced.
 *
 * The key hashes the settings, each source file's size and modification time, each target's
 * dtype, shape and byte range, and the first and last 4 KiB of each target's data. Hashing all of
 * the weights would read the whole model on every start (gigabytes for the models this is for),
 * which is most of what the cache saves; stat + layout + samples catch a replaced or retrained
 * file, including one copied with its old mtime, at the cost of a few kilobytes per tensor.
 */
export async function quantizedWeights(
  store: WeightStore,
  linears: LinearModule[],
  settings: QuantSettings,
  cacheDir: string,
): Promise<QuantCacheEntry> {
  checkQuantSettings(settings);
  const unique = [...new Map(linears.map((m) => [m.weight, m])).values()];
  const key = cacheKey(store, unique, settings);
  const file = join(cacheDir, `quant-${settings.bits}bit-b${settings.blockSize}-${key.slice(0, 24)}.safetensors`);
  mkdirSync(cacheDir, { recursive: true });
  removeStaleTemps(cacheDir);
  const cached = readEntry(file, key, unique, settings, true);
  if (cached) return { file, reused: true, weights: cached };
  try {
    await writeEntry(file, key, store, unique, settings);
  } catch (cause) {
    throw new EngineError(`cannot write the quantization cache ${file}: ${(cause as Error).message}; choose a writable cache folder`, {
      cause,
    });
  }
  const written = readEntry(file, key, unique, settings, false);
  if (!written) throw new EngineError(`quantization cache ${file} does not read back after writing`);
  return { file, reused: false, weights: written };
}

/**
 * Quantizes one weight at a time straight into the file, so memory holds one layer's tensors, not
 * the model's. The header goes first with an all-zero checksum of the same length and is
 * rewritten in place once the data is hashed; the temp file is renamed only after that.
 */
async function writeEntry(file: string, key: string, store: WeightStore, linears: LinearModule[], settings: QuantSettings): Promise<void> {
  const layout: TensorLayout[] = linears.flatMap((m) => {
    const shapes = quantizedShapes(m.outFeatures, m.inFeatures, settings);
    const names = tensorNames(m.weight);
    return [
      { name: names.data, dtype: 'U8' as const, shape: shapes.data },
      { name: names.scales, dtype: 'F32' as const, shape: shapes.scales },
      { name: names.zeroPoints, dtype: 'U8' as const, shape: shapes.zeroPoints },
    ];
  });
  const header = (sha256: string) => encodeSafetensorsHeader(layout, { format: FORMAT, key, sha256 });
  await writeFileAtomic(file, async (fh) => {
    let at = header('0'.repeat(64)).length;
    const hash = createHash('sha256');
    for (const m of linears) {
      const q = quantizeWeight(store.readF32(m.weight), m.outFeatures, m.inFeatures, { ...settings, fanInFanOut: m.fanInFanOut });
      for (const bytes of [q.data, new Uint8Array(q.scales.buffer, q.scales.byteOffset, q.scales.byteLength), q.zeroPoints]) {
        hash.update(bytes);
        await writeAt(fh, bytes, at);
        at += bytes.length;
      }
    }
    await writeAt(fh, header(hash.digest('hex')), 0);
  });
}

function cacheKey(store: WeightStore, linears: LinearModule[], settings: QuantSettings): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ format: FORMAT, bits: settings.bits, blockSize: settings.blockSize }));
  const files = new Map<string, number>();
  try {
    for (const m of linears) {
      const ref = store.ref(m.weight, m.fanInFanOut ? [m.inFeatures, m.outFeatures] : [m.outFeatures, m.inFeatures]);
      if (!files.has(ref.file)) {
        const st = statSync(ref.file, { bigint: true });
        h.update(JSON.stringify({ file: relative(store.dir, ref.file), size: String(st.size), mtime: String(st.mtimeNs) }));
        files.set(ref.file, openSync(ref.file, 'r'));
      }
      h.update(
        JSON.stringify({
          weight: m.weight,
          n: m.outFeatures,
          k: m.inFeatures,
          fanInFanOut: m.fanInFanOut,
          dtype: ref.dtype,
          offset: ref.fileOffset,
          length: ref.byteLength,
        }),
      );
      const fd = files.get(ref.file)!;
      const take = Math.min(SAMPLE_BYTES, ref.byteLength);
      h.update(readAt(fd, ref.fileOffset, take));
      h.update(readAt(fd, ref.fileOffset + ref.byteLength - take, take));
    }
  } finally {
    for (const fd of files.values()) closeSync(fd);
  }
  return h.digest('hex');
}

/**
 * The entry's tensors when the file matches the key and holds every target, and with `verify`,
 * when its data hashes to the recorded sum; else null.
 */
function readEntry(
  file: string,
  key: string,
  linears: LinearModule[],
  settings: QuantSettings,
  verify: boolean,
): Map<string, QuantizedRefs> | null {
  let st: SafetensorsFile;
  try {
    st = SafetensorsFile.open(file);
  } catch {
    return null;
  }
  try {
    const meta = st.header.metadata;
    if (meta.format !== FORMAT || meta.key !== key) return null;
    const weights = new Map<string, QuantizedRefs>();
    for (const m of linears) {
      const names = tensorNames(m.weight);
      const shapes = quantizedShapes(m.outFeatures, m.inFeatures, settings);
      const get = (name: string, dtype: string, shape: number[]) => {
        const info = st.tensors.get(name);
        return info && info.dtype === dtype && info.shape.join() === shape.join() ? info : null;
      };
      const data = get(names.data, 'U8', shapes.data);
      const scales = get(names.scales, 'F32', shapes.scales);
      const zeroPoints = get(names.zeroPoints, 'U8', shapes.zeroPoints);
      if (!data || !scales || !zeroPoints) return null;
      weights.set(m.weight, { ...settings, n: m.outFeatures, k: m.inFeatures, data, scales, zeroPoints });
    }
    if (verify && fileDataHash(file, st.header.dataStart, [...st.tensors.values()]) !== meta.sha256) return null;
    return weights;
  } finally {
    st.close();
  }
}

/** The header parser has checked that tensors tile the data section with no gap. */
function fileDataHash(file: string, start: number, tensors: TensorInfo[]): string {
  const end = tensors.reduce((a, t) => Math.max(a, t.fileOffset + t.byteLength), start);
  const fd = openSync(file, 'r');
  try {
    const h = createHash('sha256');
    const chunk = 1 << 22;
    for (let at = start; at < end; at += chunk) h.update(readAt(fd, at, Math.min(chunk, end - at)));
    return h.digest('hex');
  } finally {
    closeSync(fd);
  }
}

function readAt(fd: number, position: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const got = readSync(fd, out, done, length - done, position + done);
    if (got === 0) throw new Error(`file ended at byte ${position + done}`);
    done += got;
  }
  return out;
}

function removeStaleTemps(dir: string): void {
  for (const name of readdirSync(dir)) {
    if (!name.startsWith('.quant-') || !name.endsWith('.tmp')) continue;
    const path = join(dir, name);
    try {
      if (Date.now() - statSync(path).mtimeMs > STALE_TEMP_MS) rmSync(path, { force: true });
    } catch {
      // Another process finished or removed it meanwhile.
    }
  }
}
