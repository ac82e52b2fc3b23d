import { GraphBuilder } from './graph-builder.js';
import { encodeModel, TensorDataType } from './onnx-proto.js';
import { OPSET } from './build-graph.js';

/**
 * Small graphs that maintain what the device-cache step graph reads (see `KvResidency`) on the
 * device itself: the KV cache never comes back to the host, so re-laying it or copying a row runs
 * there; the LoRA slot tables are written a slot at a time, when an adapter is loaded. The KV
 * graphs take every layer's keys and values (`cache.<i>`, `[rows, kvHeads, columns, headDim]`) and
 * return them changed (`out.<i>`).
 */
export const KV_GRAPH = {
  cache: (i: number) => `cache.${i}`,
  out: (i: number) => `out.${i}`,
  /** [4] int64: the extent of the old cache that is kept (a Slice's ends). */
  keep: 'keep',
  /** [8] int64: zeros added after the kept extent (a Pad's pads: begins then ends). */
  grow: 'grow',
  /** [1] int64: the row copied. */
  source: 'source',
  /** [1, 1] int64: the row it is copied into. */
  target: 'target',
  /** [4] int64: where a slice of the cache starts and ends (`kv-slice`; a piece's extent in `kv-write`). */
  starts: 'starts',
  ends: 'ends',
  /** `[1, heads, positions, dim]`: a piece of one row, out of the cache (`kv-write`). */
  piece: (i: number) => `piece.${i}`,
  /** [1, heads, count, 3] int64: the (row, head, column) each written position goes to (`kv-write`). */
  index: 'index',
} as const;

function cacheGraph(
  name: string,
  tensors: number,
  extraInputs: Array<{ name: string; shape: Array<number | string> }>,
  body: (g: GraphBuilder, cache: string, i: number) => string,
  withPieces = false,
): Uint8Array {
  const g = new GraphBuilder();
  const f32 = TensorDataType.FLOAT;
  for (const input of extraInputs) g.input({ name: input.name, elemType: TensorDataType.INT64, shape: input.shape });
  for (let i = 0; i < tensors; i++) {
    g.input({ name: KV_GRAPH.cache(i), elemType: f32, shape: ['rows', 'heads', 'columns', 'dim'] });
    if (withPieces) g.input({ name: KV_GRAPH.piece(i), elemType: f32, shape: [1, 'heads', 'positions', 'dim'] });
    g.output(body(g, KV_GRAPH.cache(i), i), { name: KV_GRAPH.out(i), elemType: f32, shape: ['new_rows', 'heads', 'new_columns', 'dim'] });
  }
  return encodeModel(g.graph(name), OPSET, 'loraserve');
}

/** out = pad(cache[:keep], grow) with zeros: the cache re-laid with more (or fewer) rows or columns. */
export function kvResizeGraph(tensors: number): Uint8Array {
  return cacheGraph(
    'kv-resize',
    tensors,
    [
      { name: KV_GRAPH.keep, shape: [4] },
      { name: KV_GRAPH.grow, shape: [8] },
    ],
    (g, cache) => g.op('Pad', [g.op('Slice', [cache, g.constInt64([0, 0, 0, 0]), KV_GRAPH.keep]), KV_GRAPH.grow], { mode: 'constant' }),
  );
}

/** out = cache with row `target` replaced by row `source` (every column: those past its length are never read). */
export function kvCopyRowGraph(tensors: number): Uint8Array {
  return cacheGraph(
    'kv-copy-row',
    tensors,
    [
      { name: KV_GRAPH.source, shape: [1] },
      { name: KV_GRAPH.target, shape: [1, 1] },
    ],
    (g, cache) => g.op('ScatterND', [cache, KV_GRAPH.target, g.op('Gather', [cache, KV_GRAPH.source], { axis: 0 })]),
  );
}

/** out = cache[starts:ends]: a piece of one row, kept on the device apart from the cache (the prefix cache). */
export function kvSliceGraph(tensors: number): Uint8Array {
  return cacheGraph(
    'kv-slice',
    tensors,
    [
      { name: KV_GRAPH.starts, shape: [4] },
      { name: KV_GRAPH.ends, shape: [4] },
    ],
    (g, cache) => g.op('Slice', [cache, KV_GRAPH.starts, KV_GRAPH.ends]),
  );
}

/** out = cache with piece[:ends] scattered to `index`: a cached prefix written back into a row. */
export function kvWriteGraph(tensors: number): Uint8Array {
  return cacheGraph(
    'kv-write',
    tensors,
    [
      { name: KV_GRAPH.ends, shape: [4] },
      { name: KV_GRAPH.index, shape: [1, 'heads', 'count', 3] },
    ],
    (g, cache, i) =>
      g.op('ScatterND', [cache, KV_GRAPH.index, g.op('Slice', [KV_GRAPH.piece(i), g.constInt64([0, 0, 0, 0]), KV_GRAPH.ends])]),
    true,
  );
}

/** Names in the LoRA table graphs: table `i` in, its update, and the table out. */
export const LORA_TABLE_GRAPH = {
  table: (i: number) => `table.${i}`,
  update: (i: number) => `update.${i}`,
  out: (i: number) => `out.${i}`,
  /** [2] int64 per table: the table's shape (`lora-init`). */
  shape: (i: number) => `shape.${i}`,
  /** [R, 1] int64: the table rows of one slot's columns (`lora-write`, tables with a row per column). */
  columns: 'columns',
  /** [1, 1] int64: the table row of one slot (`lora-write`, tables with a row per slot). */
  slot: 'slot',
} as const;

/** Zero tables of the shapes fed as `shape.<i>` (ORT places this once-only shape work on the CPU; the tables it makes stay on the device). */
export function loraTablesInitGraph(tables: number): Uint8Array {
  const g = new GraphBuilder();
  const zero = g.scalar(0);
  for (let i = 0; i < tables; i++) {
    g.input({ name: LORA_TABLE_GRAPH.shape(i), elemType: TensorDataType.INT64, shape: [2] });
    g.output(g.op('Expand', [zero, LORA_TABLE_GRAPH.shape(i)]), {
      name: LORA_TABLE_GRAPH.out(i),
      elemType: TensorDataType.FLOAT,
      shape: ['rows', 'features'],
    });
  }
  return encodeModel(g.graph('lora-init'), OPSET, 'loraserve');
}

/**
 * table[index] = update for every table: tables whose `perColumn[i]` is true get a slot's R rows at
 * `columns`, the others its one row at `slot`.
 */
export function loraTablesWriteGraph(perColumn: readonly boolean[]): Uint8Array {
  const g = new GraphBuilder();
  const f32 = TensorDataType.FLOAT;
  g.input({ name: LORA_TABLE_GRAPH.columns, elemType: TensorDataType.INT64, shape: ['rank', 1] });
  g.input({ name: LORA_TABLE_GRAPH.slot, elemType: TensorDataType.INT64, shape: [1, 1] });
  perColumn.forEach((columns, i) => {
    g.input({ name: LORA_TABLE_GRAPH.table(i), elemType: f32, shape: ['rows', `features_${i}`] });
    g.input({ name: LORA_TABLE_GRAPH.update(i), elemType: f32, shape: ['updated', `features_${i}`] });
    const index = columns ? LORA_TABLE_GRAPH.columns : LORA_TABLE_GRAPH.slot;
    g.output(g.op('ScatterND', [LORA_TABLE_GRAPH.table(i), index, LORA_TABLE_GRAPH.update(i)]), {
      name: LORA_TABLE_GRAPH.out(i),
      elemType: f32,
      shape: ['rows', `features_${i}`],
    });
  });
  return encodeModel(g.graph('lora-write'), OPSET, 'loraserve');
}
