/**
 * A minimal writer for the ONNX protobuf messages a graph needs (field numbers from onnx.proto).
 * The graph holds no large tensors itself: weights are external data pointing into the model's
 * safetensors files, so the encoded graph stays small and is built in one pass.
 */
export const TensorDataType = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7, BOOL: 9, FLOAT16: 10, DOUBLE: 11, BFLOAT16: 16 } as const;
export type TensorDataTypeValue = (typeof TensorDataType)[keyof typeof TensorDataType];

class Writer {
  private chunks: Uint8Array[] = [];
  private size = 0;
  private push(b: Uint8Array) {
    this.chunks.push(b);
    this.size += b.length;
  }
  varint(v: number | bigint) {
    let n = BigInt.asUintN(64, BigInt(v));
    const bytes: number[] = [];
    while (n >= 0x80n) {
      bytes.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    bytes.push(Number(n));
    this.push(Uint8Array.from(bytes));
  }
  tag(field: number, wire: number) {
    this.varint((field << 3) | wire);
  }
  int(field: number, v: number | bigint) {
    this.tag(field, 0);
    this.varint(v);
  }
  float(field: number, v: number) {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
  }
  bytes(field: number, b: Uint8Array) {
    this.tag(field, 2);
    this.varint(b.length);
    this.push(b);
  }
  string(field: number, s: string) {
    this.bytes(field, new TextEncoder().encode(s));
  }
  message(field: number, w: Writer) {
    this.bytes(field, w.finish());
  }
  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

export type AttributeValue = number | string | number[] | { floats: number[] } | { float: number } | TensorProto;

export interface NodeProto {
  opType: string;
  inputs: string[];
  outputs: string[];
  name: string;
  domain?: string;
  attributes?: Record<string, AttributeValue>;
}

export interface TensorProto {
  name: string;
  dataType: TensorDataTypeValue;
  dims: number[];
  raw?: Uint8Array;
  external?: { location: string; offset: number; length: number };
}

export interface ValueInfo {
  name: string;
  elemType: TensorDataTypeValue;
  /** A number is a fixed size, a string a symbolic one. */
  shape: Array<number | string>;
}

export interface GraphProto {
  name: string;
  nodes: NodeProto[];
  initializers: TensorProto[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
}

function encodeTensor(t: TensorProto): Writer {
  const w = new Writer();
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.dataType);
  w.string(8, t.name);
  if (t.raw) w.bytes(9, t.raw);
  if (t.external) {
    for (const [key, value] of [
      ['location', t.external.location],
      ['offset', String(t.external.offset)],
      ['length', String(t.external.length)],
    ]) {
      const e = new Writer();
      e.string(1, key!);
      e.string(2, value!);
      w.message(13, e);
    }
    w.int(14, 1);
  }
  return w;
}

const ATTR = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7 } as const;

function encodeAttribute(name: string, v: AttributeValue): Writer {
  const w = new Writer();
  w.string(1, name);
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: use { float } for non-integers`);
    w.int(3, v);
    w.int(20, ATTR.INT);
  } else if (typeof v === 'string') {
    w.string(4, v);
    w.int(20, ATTR.STRING);
  } else if (Array.isArray(v)) {
    for (const i of v) w.int(8, i);
    w.int(20, ATTR.INTS);
  } else if ('float' in v) {
    w.float(2, v.float);
    w.int(20, ATTR.FLOAT);
  } else if ('floats' in v) {
    for (const f of v.floats) w.float(7, f);
    w.int(20, ATTR.FLOATS);
  } else {
    w.message(5, encodeTensor(v));
    w.int(20, ATTR.TENSOR);
  }
  return w;
}

function encodeValueInfo(v: ValueInfo): Writer {
  const shape = new Writer();
  for (const d of v.shape) {
    const dim = new Writer();
    if (typeof d === 'number') dim.int(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensorType = new Writer();
  tensorType.int(1, v.elemType);
  tensorType.message(2, shape);
  const type = new Writer();
  type.message(1, tensorType);
  const w = new Writer();
  w.string(1, v.name);
  w.message(2, type);
  return w;
}

export function encodeModel(graph: GraphProto, opset: number, producer: string): Uint8Array {
  const g = new Writer();
  for (const n of graph.nodes) {
    const node = new Writer();
    for (const i of n.inputs) node.string(1, i);
    for (const o of n.outputs) node.string(2, o);
    node.string(3, n.name);
    node.string(4, n.opType);
    for (const [k, v] of Object.entries(n.attributes ?? {})) node.message(5, encodeAttribute(k, v));
    if (n.domain) node.string(7, n.domain);
    g.message(1, node);
  }
  g.string(2, graph.name);
  for (const t of graph.initializers) g.message(5, encodeTensor(t));
  for (const v of graph.inputs) g.message(11, encodeValueInfo(v));
  for (const v of graph.outputs) g.message(12, encodeValueInfo(v));

  const m = new Writer();
  m.int(1, 8); // IR version 8 pairs with opset 17/18
  m.string(2, producer);
  m.message(7, g);
  for (const [domain, version] of [
    ['', opset],
    ['com.microsoft', 1],
  ] as const) {
    const o = new Writer();
    o.string(1, domain);
    o.int(2, version);
    m.message(8, o);
  }
  return m.finish();
}
