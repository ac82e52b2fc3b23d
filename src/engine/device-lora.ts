import { INPUT, LORA_TABLE_GRAPH, loraTablesInitGraph, loraTablesWriteGraph } from '../model/index.js';
import { type AdapterMix, type ParsedAdapter, SlotTable } from '../lora/index.js';
import { type DeviceTensor, type ExecutionProvider, type Feed, type HostTensor, OnnxSession } from './onnx-backend.js';

/**
 * The adapter slots as tables the provider keeps on the device, for the device-cache step graph:
 * per LoRA module A `[S·R, in]` and s·Bᵀ `[S·R, out]` (slot s owns rows s·R .. s·R+R−1, zero past
 * its rank), gain and shift `[S, out]` (SlotTable.moduleRows). Slot 0, the base model, owns no
 * columns; its gain row is 1 and every row reads it at weight 1. A slot's tensors
 * are uploaded once, when the slot table hands it a new adapter; a step uploads only which table
 * rows its packed columns and adapters read (`feeds`).
 */
export class DeviceLoraTables {
  /** Per module, in `slots.linears` order: A, B, gain, shift. */
  private tables: DeviceTensor[] = [];
  /** The adapter each slot's rows hold on the device. */
  private readonly written: Array<ParsedAdapter | null>;

  private constructor(
    private readonly slots: SlotTable,
    /** Kept open while the tables it made live: a WebGPU output's buffer belongs to its session's provider. */
    private readonly init: OnnxSession,
    private readonly writer: OnnxSession,
  ) {
    this.written = Array.from({ length: slots.slots }, () => null);
  }

  static async create(slots: SlotTable, provider: ExecutionProvider): Promise<DeviceLoraTables> {
    const count = 4 * slots.linears.length;
    const outputs = Array.from({ length: count }, (_, i) => LORA_TABLE_GRAPH.out(i));
    const open = (bytes: Uint8Array) => OnnxSession.create({ bytes }, { provider, threads: 1, deviceOutputs: outputs });
    const init = await open(loraTablesInitGraph(count));
    const writer = await open(loraTablesWriteGraph(Array.from({ length: count }, (_, i) => i % 4 < 2)));
    const tables = new DeviceLoraTables(slots, init, writer);
    const { slots: S, maxRank: R } = slots.layout;
    const shapes: Record<string, Feed> = {};
    slots.linears.forEach((m, j) => {
      const sizes = [
        [S * R, m.inFeatures],
        [S * R, m.outFeatures],
        [S, m.outFeatures],
        [S, m.outFeatures],
      ];
      sizes.forEach((shape, k) => (shapes[LORA_TABLE_GRAPH.shape(4 * j + k)] = int64(shape, [2])));
    });
    const { device } = await init.run(shapes);
    tables.tables = outputs.map((name) => device[name]!);
    await tables.write(0, null);
    return tables;
  }

  /**
   * The step's LoRA inputs: the tables (after uploading any slot whose adapter changed), each row's
   * weights over the packed columns and adapters, and where those come from in the tables.
   */
  async feeds(rowAdapters: ReadonlyArray<AdapterMix>): Promise<Record<string, Feed>> {
    await this.sync();
    const packed = this.slots.blocksFor(rowAdapters.flatMap((mix) => mix.map((a) => a.slot)));
    const { columns, rows } = SlotTable.rowWeights(packed, rowAdapters);
    const R = this.slots.layout.maxRank;
    // Unused columns (a step without adapters) read slot 0's zero rows; adapter 0 is slot 0, the base model.
    const columnSource = new BigInt64Array(packed.width);
    const adapterSource = new BigInt64Array(packed.adapters);
    for (const [slot, block] of packed.blocks) {
      for (let k = 0; k < block.width; k++) columnSource[block.offset + k] = BigInt(slot * R + k);
      adapterSource[block.index] = BigInt(slot);
    }
    const B = rowAdapters.length;
    const feeds: Record<string, Feed> = {
      [INPUT.loraColumns]: { type: 'float32', data: columns, dims: [B, 1, packed.width] },
      [INPUT.loraRows]: { type: 'float32', data: rows, dims: [B, 1, packed.adapters] },
      [INPUT.loraColumnSource]: { type: 'int64', data: columnSource, dims: [packed.width] },
      [INPUT.loraAdapterSource]: { type: 'int64', data: adapterSource, dims: [packed.adapters] },
    };
    this.slots.linears.forEach((m, j) => {
      feeds[INPUT.loraA(m.name)] = this.tables[4 * j]!;
      feeds[INPUT.loraB(m.name)] = this.tables[4 * j + 1]!;
      feeds[INPUT.loraGain(m.name)] = this.tables[4 * j + 2]!;
      feeds[INPUT.loraShift(m.name)] = this.tables[4 * j + 3]!;
    });
    return feeds;
  }

  async close(): Promise<void> {
    for (const t of this.tables.splice(0)) t.dispose();
    await this.writer.release();
    await this.init.release();
  }

  /** Uploads each slot whose adapter is not the one its device rows hold (an emptied slot is never read, so it stays). */
  private async sync(): Promise<void> {
    for (let slot = 1; slot < this.slots.slots; slot++) {
      const adapter = this.slots.adapterIn(slot);
      if (!adapter || adapter === this.written[slot]) continue;
      await this.write(slot, adapter);
      this.written[slot] = adapter;
    }
  }

  /** Writes a slot's rows of every table (null: the base model's, slot 0). */
  private async write(slot: number, adapter: ParsedAdapter | null): Promise<void> {
    const R = this.slots.layout.maxRank;
    const feeds: Record<string, Feed> = {
      [LORA_TABLE_GRAPH.columns]: int64(
        Array.from({ length: R }, (_, k) => slot * R + k),
        [R, 1],
      ),
      [LORA_TABLE_GRAPH.slot]: int64([slot], [1, 1]),
    };
    this.slots.linears.forEach((m, j) => {
      const t = adapter?.modules.get(m.name);
      // Rows past the adapter's rank (or a module it does not adapt) are zero: they add nothing.
      const a = new Float32Array(R * m.inFeatures);
      const b = new Float32Array(R * m.outFeatures);
      if (t) {
        a.set(t.a);
        b.set(t.b);
      }
      const { gain, shift } = this.slots.moduleRows(adapter, m);
      const updates = [
        f32(a, [R, m.inFeatures]),
        f32(b, [R, m.outFeatures]),
        f32(gain, [1, m.outFeatures]),
        f32(shift, [1, m.outFeatures]),
      ];
      updates.forEach((update, k) => {
        feeds[LORA_TABLE_GRAPH.table(4 * j + k)] = this.tables[4 * j + k]!;
        feeds[LORA_TABLE_GRAPH.update(4 * j + k)] = update;
      });
    });
    const { device } = await this.writer.run(feeds);
    const old = this.tables;
    this.tables = old.map((_, i) => device[LORA_TABLE_GRAPH.out(i)]!);
    for (const t of old) t.dispose();
  }
}

function int64(values: number[], dims: number[]): HostTensor {
  return { type: 'int64', data: BigInt64Array.from(values, (v) => BigInt(v)), dims };
}

function f32(data: Float32Array, dims: number[]): HostTensor {
  return { type: 'float32', data, dims };
}
