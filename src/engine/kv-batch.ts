/**
 * The running batch's key/value cache: per layer `[B, kvHeads, P, headDim]`, rows right-aligned so
 * every row's newest position is column P-1, and a `[B, P]` mask marking real positions (left
 * padding is 0). A decode step's present tensors become the next step's past without a copy;
 * rows joining or leaving are the only moments data is moved.
 */
export interface KvDims {
  layers: number;
  kvHeads: number;
  headDim: number;
}

export class KvBatch {
  size = 0;
  length = 0;
  keys: Float32Array[];
  values: Float32Array[];
  mask = new Uint8Array(0);

  constructor(readonly dims: KvDims) {
    this.keys = Array.from({ length: dims.layers }, () => new Float32Array(0));
    this.values = Array.from({ length: dims.layers }, () => new Float32Array(0));
  }

  /** Floats one row of one layer's keys takes per position. */
  private get rowStride(): number {
    return this.dims.kvHeads * this.dims.headDim;
  }

  /** Copies `count` positions of row `srcRow` (from column srcCol) to row `dstRow` at column dstCol. */
  private copyRow(src: Float32Array, srcLen: number, srcRow: number, srcCol: number, dst: Float32Array, dstLen: number, dstRow: number, dstCol: number, count: number): void {
    const { kvHeads: H, headDim: D } = this.dims;
    for (let h = 0; h < H; h++) {
      const from = ((srcRow * H + h) * srcLen + srcCol) * D;
      dst.set(src.subarray(from, from + count * D), ((dstRow * H + h) * dstLen + dstCol) * D);
    }
  }

  /** Appends the rows of another batch (a prefill's present tensors), right-aligning both. */
  append(other: { size: number; length: number; keys: Float32Array[]; values: Float32Array[]; mask: Uint8Array }): void {
    const B = this.size + other.size;
    const P = Math.max(this.length, other.length);
    const place = (mine: Float32Array, theirs: Float32Array) => {
      const out = new Float32Array(B * P * this.rowStride);
      for (let r = 0; r < this.size; r++) this.copyRow(mine, this.length, r, 0, out, P, r, P - this.length, this.length);
      for (let r = 0; r < other.size; r++) this.copyRow(theirs, other.length, r, 0, out, P, this.size + r, P - other.length, other.length);
      return out;
    };
    this.keys = this.keys.map((k, l) => place(k, other.keys[l]!));
    this.values = this.values.map((v, l) => place(v, other.values[l]!));
    const mask = new Uint8Array(B * P);
    for (let r = 0; r < this.size; r++) mask.set(this.mask.subarray(r * this.length, (r + 1) * this.length), r * P + P - this.length);
    for (let r = 0; r < other.size; r++) mask.set(other.mask.subarray(r * other.length, (r + 1) * other.length), (this.size + r) * P + P - other.length);
    this.mask = mask;
    this.size = B;
    this.length = P;
  }

  /** Keeps the rows listed (in that order) and drops leading columns no remaining row uses. */
  retain(rows: number[]): void {
    let trim = this.length;
    for (const r of rows) {
      let lead = 0;
      while (lead < this.length && this.mask[r * this.length + lead] === 0) lead++;
      trim = Math.min(trim, lead);
    }
    if (rows.length === 0) trim = this.length;
    const P = this.length - trim;
    const pick = (src: Float32Array) => {
      const out = new Float32Array(rows.length * P * this.rowStride);
      rows.forEach((r, i) => this.copyRow(src, this.length, r, trim, out, P, i, 0, P));
      return out;
    };
    this.keys = this.keys.map(pick);
    this.values = this.values.map(pick);
    const mask = new Uint8Array(rows.length * P);
    rows.forEach((r, i) => mask.set(this.mask.subarray(r * this.length + trim, (r + 1) * this.length), i * P));
    this.mask = mask;
    this.size = rows.length;
    this.length = P;
  }

  /** Takes a decode step's present tensors (length P+1); the new position is real for every row. */
  advance(keys: Float32Array[], values: Float32Array[]): void {
    const P = this.length + 1;
    const mask = new Uint8Array(this.size * P);
    for (let r = 0; r < this.size; r++) {
      mask.set(this.mask.subarray(r * this.length, (r + 1) * this.length), r * P);
      mask[r * P + P - 1] = 1;
    }
    this.keys = keys;
    this.values = values;
    this.mask = mask;
    this.length = P;
  }

  /** Mask fed with `newTokens` more real positions per row: [B, P + newTokens] as int64. */
  maskWith(newTokens: number): BigInt64Array {
    const S = this.length + newTokens;
    const out = new BigInt64Array(this.size * S);
    for (let r = 0; r < this.size; r++) {
      for (let p = 0; p < this.length; p++) out[r * S + p] = BigInt(this.mask[r * this.length + p]!);
      for (let p = this.length; p < S; p++) out[r * S + p] = 1n;
    }
    return out;
  }

  /** Floats held by keys and values together. */
  get floats(): number {
    return 2 * this.dims.layers * this.size * this.length * this.rowStride;
  }
}
