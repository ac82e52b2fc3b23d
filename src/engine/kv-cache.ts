/**
 * The key/value cache: rows a request owns for its life, and where their keys/values live.
 *
 * `KvRows` is the bookkeeping the scheduler sees (which rows are owned, how many positions each
 * holds, the capacity every row has); its subclasses store the data: `KvCache` in caller-owned
 * host buffers fed to the graph as inputs (which ORT wraps without a copy; the graph outputs only
 * each step's new keys/values, written here at each row's position), `DeviceKvCache` as tensors
 * the provider keeps on the device.
 *
 * Layout per layer: `[rows, kvHeads, capacity, headDim]`. Joining or leaving never moves another
 * row's data, and a freed row is reused by the next request. Capacity is the positions every row
 * can hold; it grows (and shrinks when the long rows have left) by re-laying the buffers, which
 * happens O(log context) times, never per step.
 */
export interface KvDims {
  layers: number;
  kvHeads: number;
  headDim: number;
}

/** The cache as one step reads it: `[batch, kvHeads, length, headDim]` per layer. */
export interface PastView {
  length: number;
  keys: Float32Array[];
  values: Float32Array[];
}

/**
 * A copy of some positions of one row, kept apart from the rows (the prefix cache's blocks): it
 * lives until `release`, whatever happens to the row it came from.
 */
export interface KvPiece {
  /** Positions it holds. */
  readonly positions: number;
  release(): void;
}

/** Where a piece's first `count` positions go in a row: positions `at`..`at + count - 1`. */
export interface KvPlacement {
  piece: KvPiece;
  at: number;
  count: number;
}

/** Capacity is a multiple of this, so growth by one position does not re-lay the buffers each time. */
const CAPACITY_QUANTUM = 64;

export abstract class KvRows {
  protected rowsAllocated = 0;
  protected capacityAllocated = 0;
  /** Positions written per owned row; -1 marks a free row. */
  private lengths: number[] = [];

  constructor(
    readonly dims: KvDims,
    private readonly maxContext: number,
  ) {}

  get capacity(): number {
    return this.capacityAllocated;
  }

  /** Rows 0..span-1 hold every owned row: a decode step feeds exactly this prefix. */
  get span(): number {
    let last = this.lengths.length - 1;
    while (last >= 0 && this.lengths[last] === -1) last--;
    return last + 1;
  }

  get ownedRows(): number {
    return this.lengths.filter((l) => l >= 0).length;
  }

  /** Floats the buffers hold (keys and values of every layer). */
  get floats(): number {
    return 2 * this.dims.layers * this.rowsAllocated * this.capacityAllocated * this.dims.kvHeads * this.dims.headDim;
  }

  /** Positions cached for `row`. */
  length(row: number): number {
    return this.lengths[row]!;
  }

  /** Takes the lowest free row (keeping the decode prefix short). */
  acquireRow(): number {
    let row = this.lengths.indexOf(-1);
    if (row < 0) row = this.lengths.push(-1) - 1;
    this.lengths[row] = 0;
    return row;
  }

  releaseRow(row: number): void {
    this.lengths[row] = -1;
    while (this.lengths.length && this.lengths[this.lengths.length - 1] === -1) this.lengths.pop();
    if (this.lengths.length === 0) this.clear();
    else this.shrinkIfOversized();
  }

  /** Makes room for rows 0..span-1 and `positions` positions per row. */
  reserve(positions: number): void {
    const rows = this.lengths.length;
    const needed = Math.min(this.maxContext, positions);
    if (rows <= this.rowsAllocated && needed <= this.capacityAllocated) return;
    const grownRows = Math.max(rows, Math.min(2 * this.rowsAllocated, rows + 8));
    // Grow capacity by at least half again, so a growing context re-lays the buffers O(log n) times.
    const grownCapacity =
      needed <= this.capacityAllocated ? this.capacityAllocated : Math.max(needed, Math.ceil(this.capacityAllocated * 1.5));
    this.resize(grownRows, Math.min(roundUp(grownCapacity), roundUp(this.maxContext)));
  }

  /**
   * Copies the first `length` positions of row `src` into row `dst` (whose length becomes
   * `length`): n choices of one prompt share its prefill this way. Call `reserve` first.
   */
  copyPrefix(src: number, dst: number, length: number): void {
    if (length > this.lengths[src]! || length > this.capacityAllocated)
      throw new RangeError(`row ${src} holds ${this.lengths[src]} positions; ${length} asked`);
    this.copyRow(src, dst, length);
    this.lengths[dst] = length;
  }

  /** Copies positions `start`..`start + count - 1` of `row` out of the cache. */
  async snapshot(row: number, start: number, count: number): Promise<KvPiece> {
    if (count < 1 || start + count > this.lengths[row]!)
      throw new RangeError(`row ${row} holds ${this.lengths[row]} positions; ${start}..${start + count - 1} asked`);
    return this.readPiece(row, start, count);
  }

  /**
   * Writes pieces into `row`, which then holds positions 0..end-1 where `end` is the furthest
   * placement (the placements must cover them). Call `reserve` first.
   */
  async restore(row: number, placements: readonly KvPlacement[]): Promise<void> {
    const end = Math.max(0, ...placements.map((p) => p.at + p.count));
    if (end > this.capacityAllocated) throw new RangeError(`${end} positions asked; the cache holds ${this.capacityAllocated}`);
    for (const p of placements)
      if (p.count > p.piece.positions) throw new RangeError(`a piece of ${p.piece.positions} positions cannot fill ${p.count}`);
    await this.writePieces(row, placements);
    this.lengths[row] = end;
  }

  /**
   * Marks `row` as holding `length` positions without writing them: a benchmark's synthetic cache
   * (a step costs the same whatever the values). Call `reserve` first.
   */
  assumeWritten(row: number, length: number): void {
    if (length > this.capacityAllocated) throw new RangeError(`${length} positions asked; the cache holds ${this.capacityAllocated}`);
    this.lengths[row] = length;
  }

  /** Row `rows[i]` now holds `counts[i]` more positions (written by the step that just ran). */
  protected advance(rows: readonly number[], counts: readonly number[]): void {
    rows.forEach((row, i) => {
      if (counts[i]! > 0) this.lengths[row]! += counts[i]!;
    });
  }

  /** Throws unless each row has room for its count of new positions. */
  checkRoom(rows: readonly number[], counts: readonly number[]): void {
    rows.forEach((row, i) => {
      const needed = this.lengths[row]! + counts[i]!;
      if (counts[i]! > 0 && needed > this.capacityAllocated)
        throw new RangeError(`row ${row} needs ${needed} positions; the cache holds ${this.capacityAllocated}`);
    });
  }

  /** Re-lays the storage as `rows` × `capacity`, keeping every owned row's positions. */
  protected abstract relayout(rows: number, capacity: number): void;
  /** Copies row `src`'s first `length` positions into row `dst`. */
  protected abstract copyRow(src: number, dst: number, length: number): void;
  /** Drops the storage (no row is owned). */
  protected abstract dropStorage(): void;
  protected abstract readPiece(row: number, start: number, count: number): Promise<KvPiece>;
  protected abstract writePieces(row: number, placements: readonly KvPlacement[]): Promise<void>;

  private resize(rows: number, capacity: number): void {
    this.relayout(rows, capacity);
    this.rowsAllocated = rows;
    this.capacityAllocated = capacity;
  }

  private shrinkIfOversized(): void {
    const longest = Math.max(0, ...this.lengths);
    if (this.capacityAllocated > CAPACITY_QUANTUM && roundUp(2 * longest) < this.capacityAllocated) {
      this.resize(this.rowsAllocated, roundUp(Math.ceil(longest * 1.5)));
    }
  }

  private clear(): void {
    this.dropStorage();
    this.rowsAllocated = 0;
    this.capacityAllocated = 0;
  }
}

/** The cache in host buffers (see the module comment). */
export class KvCache extends KvRows {
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];

  /**
   * The past of `rows` for a step: the cache itself when the rows are 0..n-1 in order (no copy),
   * else a copy of just those rows' first `length` positions. An empty past has length 0.
   */
  past(rows: readonly number[]): PastView {
    const isPrefix = rows.every((r, i) => r === i);
    const longest = Math.max(0, ...rows.map((r) => this.length(r)));
    if (isPrefix && longest > 0) {
      const floats = rows.length * this.dims.kvHeads * this.capacityAllocated * this.dims.headDim;
      return {
        length: this.capacityAllocated,
        keys: this.keys.map((k) => k.subarray(0, floats)),
        values: this.values.map((v) => v.subarray(0, floats)),
      };
    }
    const { kvHeads: H, headDim: D } = this.dims;
    if (longest === 0) {
      const none = () => Array.from({ length: this.dims.layers }, () => new Float32Array(0));
      return { length: 0, keys: none(), values: none() };
    }
    const gather = (src: Float32Array) => {
      const out = new Float32Array(rows.length * H * longest * D);
      rows.forEach((row, i) => {
        for (let h = 0; h < H; h++) {
          const from = (row * H + h) * this.capacityAllocated * D;
          out.set(src.subarray(from, from + longest * D), (i * H + h) * longest * D);
        }
      });
      return out;
    };
    return { length: longest, keys: this.keys.map(gather), values: this.values.map(gather) };
  }

  /**
   * Writes a step's new keys/values (`[batch, kvHeads, seq, headDim]` per layer): batch row i's last
   * `counts[i]` tokens go to `rows[i]` at its current length, which then advances. Rows with
   * count 0 (padding rows of a decode step) are skipped.
   */
  append(rows: readonly number[], counts: readonly number[], seq: number, keys: Float32Array[], values: Float32Array[]): void {
    const { kvHeads: H, headDim: D } = this.dims;
    const C = this.capacityAllocated;
    this.checkRoom(rows, counts);
    rows.forEach((row, i) => {
      const count = counts[i]!;
      if (count === 0) return;
      const at = this.length(row);
      for (let l = 0; l < this.dims.layers; l++) {
        for (let h = 0; h < H; h++) {
          const from = ((i * H + h) * seq + seq - count) * D;
          const to = ((row * H + h) * C + at) * D;
          this.keys[l]!.set(keys[l]!.subarray(from, from + count * D), to);
          this.values[l]!.set(values[l]!.subarray(from, from + count * D), to);
        }
      }
    });
    this.advance(rows, counts);
  }

  protected copyRow(src: number, dst: number, length: number): void {
    const { kvHeads: H, headDim: D } = this.dims;
    const C = this.capacityAllocated;
    for (let l = 0; l < this.dims.layers; l++) {
      for (let h = 0; h < H; h++) {
        const from = (src * H + h) * C * D;
        const to = (dst * H + h) * C * D;
        this.keys[l]!.copyWithin(to, from, from + length * D);
        this.values[l]!.copyWithin(to, from, from + length * D);
      }
    }
  }

  protected dropStorage(): void {
    this.keys = [];
    this.values = [];
  }

  protected async readPiece(row: number, start: number, count: number): Promise<KvPiece> {
    const { kvHeads: H, headDim: D } = this.dims;
    const C = this.capacityAllocated;
    const cut = (src: Float32Array) => {
      const out = new Float32Array(H * count * D);
      for (let h = 0; h < H; h++) {
        const from = ((row * H + h) * C + start) * D;
        out.set(src.subarray(from, from + count * D), h * count * D);
      }
      return out;
    };
    return new HostPiece(count, this.keys.map(cut), this.values.map(cut));
  }

  protected async writePieces(row: number, placements: readonly KvPlacement[]): Promise<void> {
    const { kvHeads: H, headDim: D } = this.dims;
    const C = this.capacityAllocated;
    for (const { piece, at, count } of placements) {
      const p = piece as HostPiece;
      const paste = (src: Float32Array, dst: Float32Array) => {
        for (let h = 0; h < H; h++) {
          const from = h * p.positions * D;
          dst.set(src.subarray(from, from + count * D), ((row * H + h) * C + at) * D);
        }
      };
      p.keys.forEach((k, l) => paste(k, this.keys[l]!));
      p.values.forEach((v, l) => paste(v, this.values[l]!));
    }
  }

  protected relayout(rows: number, capacity: number): void {
    const { kvHeads: H, headDim: D, layers } = this.dims;
    const keep = Math.min(this.capacityAllocated, capacity);
    const move = (src: Float32Array | undefined) => {
      const out = new Float32Array(rows * H * capacity * D);
      if (!src) return out;
      for (let r = 0; r < Math.min(this.rowsAllocated, rows); r++) {
        if (r >= this.span || this.length(r) <= 0) continue;
        for (let h = 0; h < H; h++) {
          const from = (r * H + h) * this.capacityAllocated * D;
          out.set(src.subarray(from, from + keep * D), (r * H + h) * capacity * D);
        }
      }
      return out;
    };
    this.keys = Array.from({ length: layers }, (_, l) => move(this.keys[l]));
    this.values = Array.from({ length: layers }, (_, l) => move(this.values[l]));
  }
}

/** A piece in host memory: per layer `[kvHeads, positions, headDim]`. */
class HostPiece implements KvPiece {
  constructor(
    readonly positions: number,
    readonly keys: Float32Array[],
    readonly values: Float32Array[],
  ) {}

  release(): void {}
}

function roundUp(n: number): number {
  return Math.max(CAPACITY_QUANTUM, Math.ceil(n / CAPACITY_QUANTUM) * CAPACITY_QUANTUM);
}
