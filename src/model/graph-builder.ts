import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import {
  TensorDataType,
  type AttributeValue,
  type GraphProto,
  type NodeProto,
  type TensorDataTypeValue,
  type TensorProto,
  type ValueInfo,
} from './onnx-proto.js';
import type { WeightRef } from './weights.js';

/**
 * Builds an ONNX graph with names generated per op. Architecture files use this and the shared
 * blocks in `blocks.ts`; nothing here knows about any one model family.
 */
export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  readonly inputs: ValueInfo[] = [];
  readonly outputs: ValueInfo[] = [];
  /**
   * Folder holding every file the graph references as external data, set by `graph()`: the
   * nearest common ancestor of those files. ORT resolves locations against it and refuses any
   * that are absolute or climb out of it.
   */
  externalDir: string | null = null;
  private readonly externalFiles: Array<{ tensor: TensorProto; file: string }> = [];
  private readonly weightValues = new Map<string, string>();
  private counter = 0;
  private constCache = new Map<string, string>();

  op(opType: string, inputs: string[], attributes?: Record<string, AttributeValue>, domain?: string): string {
    return this.opN(opType, inputs, 1, attributes, domain)[0]!;
  }

  /** `outputs`: how many, or which of the op's outputs to produce (an unused optional output gets no name). */
  opN(
    opType: string,
    inputs: string[],
    outputs: number | readonly boolean[],
    attributes?: Record<string, AttributeValue>,
    domain?: string,
  ): string[] {
    const id = `${opType}_${this.counter++}`;
    const wanted = typeof outputs === 'number' ? Array.from({ length: outputs }, () => true) : outputs;
    const outs = wanted.map((used, i) => (used ? `${id}:${i}` : ''));
    this.nodes.push({ opType, inputs, outputs: outs, name: id, attributes, domain });
    return outs;
  }

  /**
   * Makes a value a graph output by renaming the node that produces it (an Identity would copy
   * it). Returns the output name, which later nodes must use.
   */
  output(value: string, info: ValueInfo): string {
    const producer = this.nodes.find((n) => n.outputs.includes(value));
    if (!producer) throw new Error(`no node produces ${value}`);
    producer.outputs = producer.outputs.map((o) => (o === value ? info.name : o));
    for (const n of this.nodes) n.inputs = n.inputs.map((i) => (i === value ? info.name : i));
    this.outputs.push(info);
    return info.name;
  }

  input(info: ValueInfo): string {
    this.inputs.push(info);
    return info.name;
  }

  constInt64(values: number[], dims: number[] = [values.length]): string {
    const key = `i64:${dims.join(',')}:${values.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit) return hit;
    const name = `const_${this.counter++}`;
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.initializers.push({ name, dataType: TensorDataType.INT64, dims, raw: new Uint8Array(data.buffer) });
    this.constCache.set(key, name);
    return name;
  }

  constFloat(values: number[] | Float32Array, dims: number[] = [values.length]): string {
    const arr = values instanceof Float32Array ? values : Float32Array.from(values);
    const key = arr.length <= 16 ? `f32:${dims.join(',')}:${Array.from(arr).join(',')}` : '';
    const hit = key ? this.constCache.get(key) : undefined;
    if (hit) return hit;
    const name = `const_${this.counter++}`;
    this.initializers.push({
      name,
      dataType: TensorDataType.FLOAT,
      dims,
      raw: new Uint8Array(arr.buffer.slice(arr.byteOffset, arr.byteOffset + arr.byteLength)),
    });
    if (key) this.constCache.set(key, name);
    return name;
  }

  scalar(v: number): string {
    return this.constFloat([v], []);
  }

  /** A constant of any type whose bytes the graph carries itself (small tensors, tests). */
  constTensor(dataType: TensorDataTypeValue, dims: number[], bytes: Uint8Array): string {
    const name = `const_${this.counter++}`;
    this.initializers.push({ name, dataType, dims, raw: bytes });
    return name;
  }

  /** A constant read in place from a byte range of a file (ONNX external data); `file` is absolute. */
  external(name: string, dataType: TensorDataTypeValue, dims: number[], file: string, offset: number, length: number): string {
    const tensor: TensorProto = { name, dataType, dims, external: { location: file, offset, length } };
    this.initializers.push(tensor);
    this.externalFiles.push({ tensor, file: resolve(file) });
    return name;
  }

  /**
   * A weight read in place from its safetensors file. Half-precision weights get a Cast that ORT
   * constant-folds to float32 at load.
   */
  weight(ref: WeightRef): string {
    const known = this.weightValues.get(ref.name);
    if (known) return known;
    const dataType = ref.dtype === 'F32' ? TensorDataType.FLOAT : ref.dtype === 'F16' ? TensorDataType.FLOAT16 : TensorDataType.BFLOAT16;
    const name = this.external(ref.name, dataType, ref.shape, ref.file, ref.fileOffset, ref.byteLength);
    const value = dataType === TensorDataType.FLOAT ? name : this.op('Cast', [name], { to: TensorDataType.FLOAT });
    this.weightValues.set(ref.name, value);
    return value;
  }

  graph(name: string): GraphProto {
    if (this.externalFiles.length > 0) {
      const outside = (dir: string, file: string) => {
        const rel = relative(dir, file);
        return rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel);
      };
      let dir = dirname(this.externalFiles[0]!.file);
      for (const { file } of this.externalFiles) while (outside(dir, file) && dirname(dir) !== dir) dir = dirname(dir);
      for (const { tensor, file } of this.externalFiles) {
        if (outside(dir, file)) throw new Error(`external data files ${this.externalFiles[0]!.file} and ${file} share no folder`);
        const location = relative(dir, file);
        tensor.external!.location = location.split(sep).join('/');
      }
      this.externalDir = dir;
    }
    return { name, nodes: this.nodes, initializers: this.initializers, inputs: this.inputs, outputs: this.outputs };
  }
}
