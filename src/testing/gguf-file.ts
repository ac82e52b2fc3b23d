import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/**
 * A GGUF v3 file writer (llama.cpp's model format): header, typed key/values, tensor infos, then
 * the tensor data, each tensor at an offset padded to the alignment. Little-endian throughout.
 * Layout as gguf-py's GGUFWriter writes it; `@huggingface/gguf` only reads, so this is our own.
 */

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** ggml_type ids for the tensor types written here (ggml.h). */
export const GGML_TYPE = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 } as const;
export type GgmlType = keyof typeof GGML_TYPE;

/** Elements per block and bytes per block of each type (ggml-common.h: block_q4_0, block_q8_0). */
const BLOCK: Record<GgmlType, { elements: number; bytes: number }> = {
  F32: { elements: 1, bytes: 4 },
  F16: { elements: 1, bytes: 2 },
  Q4_0: { elements: 32, bytes: 18 },
  Q8_0: { elements: 32, bytes: 34 },
};

/** gguf_type ids of metadata values (gguf.h). */
const VALUE_TYPE = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;
type Scalar = 'u32' | 'i32' | 'f32' | 'bool' | 'string';

export type GgufValue =
  | { type: 'u32' | 'i32' | 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; of: 'string'; value: readonly string[] }
  | { type: 'array'; of: 'u32' | 'i32' | 'f32'; value: readonly number[] };

export const gguf = {
  u32: (value: number): GgufValue => ({ type: 'u32', value }),
  i32: (value: number): GgufValue => ({ type: 'i32', value }),
  f32: (value: number): GgufValue => ({ type: 'f32', value }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  str: (value: string): GgufValue => ({ type: 'string', value }),
  strings: (value: readonly string[]): GgufValue => ({ type: 'array', of: 'string', value }),
  i32s: (value: readonly number[]): GgufValue => ({ type: 'array', of: 'i32', value }),
};

export interface GgufTensor {
  name: string;
  /** Outermost dimension first, as Hugging Face and numpy list it; GGUF stores the reverse. */
  shape: number[];
  type: GgmlType;
  /** The tensor's bytes, produced when it is written so that a large model is never all in memory. */
  data: () => Uint8Array;
}

export function tensorBytes(shape: readonly number[], type: GgmlType): number {
  const { elements, bytes } = BLOCK[type];
  const inner = shape[shape.length - 1] ?? 1;
  if (inner % elements !== 0) throw new RangeError(`${type} needs rows that are a multiple of ${elements} elements; got ${inner}`);
  return (shape.reduce((a, b) => a * b, 1) / elements) * bytes;
}

/** A growable little-endian byte buffer for the header. */
class ByteWriter {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u32(v: number): void {
    this.reserve(4);
    this.buf.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.buf.writeInt32LE(v, this.length);
    this.length += 4;
  }
  f32(v: number): void {
    this.reserve(4);
    this.buf.writeFloatLE(v, this.length);
    this.length += 4;
  }
  u64(v: number): void {
    this.reserve(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  u8(v: number): void {
    this.reserve(1);
    this.buf.writeUInt8(v, this.length);
    this.length += 1;
  }
  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.reserve(bytes.length);
    bytes.copy(this.buf, this.length);
    this.length += bytes.length;
  }
  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.reserve(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function writeScalar(w: ByteWriter, type: Scalar, v: number | string | boolean): void {
  if (type === 'string') w.string(v as string);
  else if (type === 'bool') w.u8(v ? 1 : 0);
  else w[type](v as number);
}

function writeValue(w: ByteWriter, v: GgufValue): void {
  w.u32(VALUE_TYPE[v.type]);
  if (v.type !== 'array') {
    writeScalar(w, v.type, v.value);
    return;
  }
  w.u32(VALUE_TYPE[v.of]);
  w.u64(v.value.length);
  for (const x of v.value) writeScalar(w, v.of, x);
}

/**
 * Writes a GGUF file: to a temp name beside `path`, fsynced, then renamed, so a reader never
 * sees half a model.
 */
export function writeGguf(path: string, metadata: ReadonlyArray<readonly [string, GgufValue]>, tensors: readonly GgufTensor[]): void {
  const names = new Set<string>();
  for (const [key] of metadata) {
    if (names.has(key)) throw new Error(`GGUF metadata key "${key}" given twice`);
    names.add(key);
  }
  const header = new ByteWriter();
  header.u32(MAGIC);
  header.u32(VERSION);
  header.u64(tensors.length);
  header.u64(metadata.length);
  for (const [key, value] of metadata) {
    header.string(key);
    writeValue(header, value);
  }
  let offset = 0;
  const sizes: number[] = [];
  for (const t of tensors) {
    header.string(t.name);
    header.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) header.u64(d);
    header.u32(GGML_TYPE[t.type]);
    header.u64(offset);
    const size = tensorBytes(t.shape, t.type);
    sizes.push(size);
    offset += Math.ceil(size / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
  }
  header.pad(GGUF_ALIGNMENT);

  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, header.bytes());
    const zeros = Buffer.alloc(GGUF_ALIGNMENT);
    tensors.forEach((t, i) => {
      const data = t.data();
      if (data.byteLength !== sizes[i])
        throw new Error(
          `GGUF tensor "${t.name}": ${data.byteLength} bytes given, ${sizes[i]} expected for ${t.type} ${JSON.stringify(t.shape)}`,
        );
      writeSync(fd, data);
      writeSync(fd, zeros, 0, (GGUF_ALIGNMENT - (data.byteLength % GGUF_ALIGNMENT)) % GGUF_ALIGNMENT);
    });
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
}
