import { INPUT, KV_GRAPH, kvCopyRowGraph, kvResizeGraph, kvSliceGraph, kvWriteGraph, OUTPUT } from '../model/index.js';
import { KvRows, type KvDims, type KvPiece, type KvPlacement } from './kv-cache.js';
import { type DeviceTensor, type ExecutionProvider, type Feed, OnnxSession } from './onnx-backend.js';

/**
 * The KV cache as tensors the provider keeps on the device (see `KvResidency` in the model layer):
 * each layer's keys and values `[rows, kvHeads, capacity + 1, headDim]`, where the last column is
 * scratch that padding tokens and idle rows write into and no query ever sees. The step graph
 * scatters its new keys/values in and returns the whole cache as `present_*`, which replaces the
 * old tensors here; re-laying, row copies and the prefix cache's pieces (sliced out of a row, and
 * written back into one) run as small graphs on the same device. Nothing that
 * grows with the cached length crosses between host and device.
 *
 * Re-laying and copies are ordered after the bookkeeping that asked for them (which is
 * synchronous, like the host cache's) and run on the device before the next step (`flush`).
 */
export class DeviceKvCache extends KvRows {
  /** Keys of every layer, then values of every layer; null before the first row is reserved. */
  private tensors: DeviceTensor[] | null = null;
  private pending: Array<() => Promise<void>> = [];

  private constructor(
    dims: KvDims,
    maxContext: number,
    private readonly resizer: OnnxSession,
    private readonly copier: OnnxSession,
    private readonly slicer: OnnxSession,
    private readonly writer: OnnxSession,
  ) {
    super(dims, maxContext);
  }

  static async create(dims: KvDims, maxContext: number, provider: ExecutionProvider): Promise<DeviceKvCache> {
    const tensors = 2 * dims.layers;
    const outputs = Array.from({ length: tensors }, (_, i) => KV_GRAPH.out(i));
    const session = (bytes: Uint8Array) => OnnxSession.create({ bytes }, { provider, threads: 1, deviceOutputs: outputs });
    return new DeviceKvCache(
      dims,
      maxContext,
      await session(kvResizeGraph(tensors)),
      await session(kvCopyRowGraph(tensors)),
      await session(kvSliceGraph(tensors)),
      await session(kvWriteGraph(tensors)),
    );
  }

  /** The column padding tokens and idle rows write to. */
  get scratchColumn(): number {
    return this.capacityAllocated;
  }

  /** Runs the re-layouts and copies asked for since the last step. */
  async flush(): Promise<void> {
    for (const op of this.pending.splice(0)) await op();
  }

  /** The step graph's cache inputs. */
  feeds(): Record<string, Feed> {
    if (!this.tensors || this.pending.length) throw new Error('the device cache was read before it was reserved and flushed');
    const feeds: Record<string, Feed> = {};
    for (let l = 0; l < this.dims.layers; l++) {
      feeds[INPUT.pastKey(l)] = this.tensors[l]!;
      feeds[INPUT.pastValue(l)] = this.tensors[this.dims.layers + l]!;
    }
    return feeds;
  }

  /** Takes the step's `present_*` outputs as the cache; row `rows[i]` gained `counts[i]` positions. */
  commit(present: Record<string, DeviceTensor>, rows: readonly number[], counts: readonly number[]): void {
    const { layers } = this.dims;
    this.replace(
      Array.from({ length: 2 * layers }, (_, i) => present[i < layers ? OUTPUT.presentKey(i) : OUTPUT.presentValue(i - layers)]!),
    );
    this.advance(rows, counts);
  }

  async close(): Promise<void> {
    this.dropStorage();
    await this.resizer.release();
    await this.copier.release();
    await this.slicer.release();
    await this.writer.release();
  }

  protected relayout(rows: number, capacity: number): void {
    const { kvHeads: H, headDim: D } = this.dims;
    const from = { rows: this.rowsAllocated, columns: this.capacityAllocated };
    this.pending.push(async () => {
      // Keep the real columns (not the old scratch column) of the rows both layouts have; a first
      // layout starts from one zero row and column, the only bytes uploaded.
      const keep = this.tensors ? [Math.min(from.rows, rows), H, Math.min(from.columns, capacity), D] : [1, H, 1, D];
      const grow = [0, 0, 0, 0, rows - keep[0]!, 0, capacity + 1 - keep[2]!, 0];
      const start = this.tensors ?? Array.from({ length: 2 * this.dims.layers }, () => zeros(H * D, [1, H, 1, D]));
      await this.runOnEvery(this.resizer, start, { [KV_GRAPH.keep]: int64(keep, [4]), [KV_GRAPH.grow]: int64(grow, [8]) });
    });
  }

  protected copyRow(src: number, dst: number): void {
    this.pending.push(() =>
      this.runOnEvery(this.copier, this.tensors!, { [KV_GRAPH.source]: int64([src], [1]), [KV_GRAPH.target]: int64([dst], [1, 1]) }),
    );
  }

  protected dropStorage(): void {
    this.pending = [];
    this.replace(null);
  }

  // Pieces are read and written at once (after the pending re-layouts), so a piece never waits on
  // a cache state that a later release or re-layout could change.
  protected async readPiece(row: number, start: number, count: number): Promise<KvPiece> {
    await this.flush();
    const { kvHeads: H, headDim: D } = this.dims;
    const tensors = await this.runGraph(this.slicer, this.tensors!, {
      [KV_GRAPH.starts]: int64([row, 0, start, 0], [4]),
      [KV_GRAPH.ends]: int64([row + 1, H, start + count, D], [4]),
    });
    return {
      positions: count,
      tensors,
      release: () => {
        for (const t of tensors) t.dispose();
      },
    } as DevicePiece;
  }

  protected async writePieces(row: number, placements: readonly KvPlacement[]): Promise<void> {
    await this.flush();
    const { kvHeads: H, headDim: D } = this.dims;
    for (const { piece, at, count } of placements) {
      const index = new BigInt64Array(H * count * 3);
      for (let h = 0; h < H; h++) for (let j = 0; j < count; j++) index.set([BigInt(row), BigInt(h), BigInt(at + j)], (h * count + j) * 3);
      const feeds: Record<string, Feed> = {
        [KV_GRAPH.ends]: int64([1, H, count, D], [4]),
        [KV_GRAPH.index]: { type: 'int64', data: index, dims: [1, H, count, 3] },
      };
      (piece as DevicePiece).tensors.forEach((t, i) => (feeds[KV_GRAPH.piece(i)] = t));
      await this.runOnEvery(this.writer, this.tensors!, feeds);
    }
  }

  private async runOnEvery(session: OnnxSession, cache: Feed[], extra: Record<string, Feed>): Promise<void> {
    this.replace(await this.runGraph(session, cache, extra));
  }

  /** Runs a KV graph on every layer's keys and values; returns its outputs. */
  private async runGraph(session: OnnxSession, cache: Feed[], extra: Record<string, Feed>): Promise<DeviceTensor[]> {
    const feeds: Record<string, Feed> = { ...extra };
    cache.forEach((t, i) => (feeds[KV_GRAPH.cache(i)] = t));
    const { device } = await session.run(feeds);
    return cache.map((_, i) => device[KV_GRAPH.out(i)]!);
  }

  private replace(tensors: DeviceTensor[] | null): void {
    const old = this.tensors;
    this.tensors = tensors;
    for (const t of old ?? []) t.dispose();
  }
}

/** A piece on the device: keys of every layer, then values, each `[1, kvHeads, positions, headDim]`. */
interface DevicePiece extends KvPiece {
  tensors: DeviceTensor[];
}

function int64(values: number[], dims: number[]): Feed {
  return { type: 'int64', data: BigInt64Array.from(values, (v) => BigInt(v)), dims };
}

function zeros(length: number, dims: number[]): Feed {
  return { type: 'float32', data: new Float32Array(length), dims };
}
