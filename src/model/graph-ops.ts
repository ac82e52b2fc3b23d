import type { GraphBuilder } from './graph-builder.js';
import { ropeInverseFrequencies, type LinearModule, type ModelDims } from './dims.js';
import type { WeightStore } from './weights.js';
import { TensorDataType } from './onnx-proto.js';
import { cachedQuantized, matMulNBits } from './matmul-nbits.js';
import type { BaseQuantization } from './base-quantization.js';

/**
 * Sizes of the engine's adapter slots; null builds a plain base-model graph. `slots` counts slot 0,
 * the base model, which holds no tensors. The graph itself does not depend on these sizes: a step
 * is fed only the adapters its rows use (see `linear`).
 */
export interface LoraLayout {
  slots: number;
  maxRank: number;
}

/**
 * Where the KV cache lives between steps.
 * - `host`: caller-owned buffers fed as inputs (ORT wraps inputs without a copy); the graph outputs
 *   only the step's new keys/values. Right for the CPU provider, where an output is always a copy.
 * - `device`: the whole cache `[rows, kvHeads, capacity + 1, headDim]` is an input the graph
 *   scatters the step's keys/values into and returns as `present_*`, which a GPU provider keeps
 *   on the device and the caller feeds back next step: nothing that grows with the cached length
 *   crosses between host and device. This graph is also built from ops the WebGPU provider
 *   implements, with no shape arithmetic (which ORT would place on the CPU): hidden states stay
 *   `[B, T, features]` so every reshape has a constant target.
 */
export type KvResidency = 'host' | 'device';

export const INPUT = {
  /** [B, T, hidden]: the token embeddings, looked up by the caller (see `embed`). */
  embeds: 'inputs_embeds',
  positions: 'position_ids',
  /** [B, P + T]: 1 where a past position or a new token of the row is real (host cache). */
  mask: 'attention_mask',
  /** [B]: the cache row each batch row reads and writes (device cache). */
  kvRows: 'kv_rows',
  /**
   * [B, kvHeads, T, 3]: where each new key/value goes, (row, head, position); padding tokens go to
   * the cache's last column, which no query sees (device cache).
   */
  kvIndex: 'kv_index',
  /**
   * The weight of each packed LoRA column for the token's row (1 on its adapter's block, 0
   * elsewhere): [N, W] per token (host cache) or [B, 1, W] per row (device cache).
   */
  loraColumns: 'lora_columns',
  /** The weight of each packed adapter for the token's row, the base model's 1 first: [N, U] or [B, 1, U]. */
  loraRows: 'lora_rows',
  /**
   * [M]: the positions (indices into the flattened [B·T] new tokens) that get logits. Usually each
   * row's last position; every prompt position for requests that asked for prompt logprobs.
   */
  logitRows: 'logit_rows',
  pastKey: (l: number) => `past_key.${l}`,
  pastValue: (l: number) => `past_value.${l}`,
  /**
   * Device cache only: [W] the LoRA table row of each packed column, [U] the table row of each
   * packed adapter. There the `lora_*` inputs are whole slot tables kept on the device (a slot's R
   * rows per column table, a row per slot otherwise), written when an adapter loads, and the step
   * gathers the columns its rows use.
   */
  loraColumnSource: 'lora_column_source',
  loraAdapterSource: 'lora_adapter_source',
  loraA: (m: string) => `lora_A.${m}`,
  loraB: (m: string) => `lora_B.${m}`,
  loraShift: (m: string) => `lora_shift.${m}`,
  /** [U, out]: g − 1 per packed adapter (DoRA's output scale; 0 for plain LoRA adapters). */
  loraGain: (m: string) => `lora_gain.${m}`,
} as const;
export const OUTPUT = {
  /** [M, vocab]: one row per entry of `logit_rows`. */
  logits: 'logits',
  /** [B, kvHeads, T, headDim]: only this step's keys; the caller writes them into its own cache. */
  newKey: (l: number) => `new_key.${l}`,
  newValue: (l: number) => `new_value.${l}`,
  /** The device cache after this step's writes: fed back as `past_*` next step. */
  presentKey: (l: number) => `present_key.${l}`,
  presentValue: (l: number) => `present_value.${l}`,
} as const;

/**
 * The operations an architecture's forward pass is written in. With a host cache, hidden states
 * travel as 2-D `[N = batch·seq, features]` so every linear layer is one Gemm and attention
 * reshapes locally; with a device cache they stay `[B, T, features]` (see `KvResidency`).
 * Padding is on the left, so each row's last position is the last column.
 */
export class GraphOps {
  private readonly linearsByName: Map<string, LinearModule>;
  private readonly batchSeq: string | null;
  private readonly onDevice: boolean;
  private keyPositions: string | null = null;
  private readonly maskBias = new Map<number | null, string>();
  private visible: string | null = null;
  private pastLength: string | null = null;
  private rope: { cos: string; sin: string } | null = null;
  private tokenRope: { cos: string; sin: string } | null = null;

  constructor(
    readonly g: GraphBuilder,
    readonly dims: ModelDims,
    readonly weights: WeightStore,
    linears: LinearModule[],
    readonly lora: LoraLayout | null,
    /** The linear layers that get LoRA slot inputs (all of them unless the engine narrows it). */
    private readonly loraModules: ReadonlySet<string> = new Set(linears.map((m) => m.name)),
    /** Quantized base weights (block linears and LM head); null runs them in float32. */
    private readonly quant: BaseQuantization | null = null,
    readonly kv: KvResidency = 'host',
  ) {
    this.linearsByName = new Map(linears.map((m) => [m.name, m]));
    this.onDevice = kv === 'device';
    const { kvHeads, headDim, layers } = dims;
    const i64 = TensorDataType.INT64;
    const f32 = TensorDataType.FLOAT;
    g.input({ name: INPUT.embeds, elemType: f32, shape: ['batch', 'seq', dims.hidden] });
    // int32 on the device: WebGPU casts int32 (not int64) to float for the rotary tables and the mask.
    g.input({ name: INPUT.positions, elemType: this.onDevice ? TensorDataType.INT32 : i64, shape: ['batch', 'seq'] });
    g.input({ name: INPUT.logitRows, elemType: i64, shape: ['logit_rows'] });
    if (this.onDevice) {
      g.input({ name: INPUT.kvRows, elemType: i64, shape: ['batch'] });
      g.input({ name: INPUT.kvIndex, elemType: i64, shape: ['batch', kvHeads, 'seq', 3] });
    } else {
      g.input({ name: INPUT.mask, elemType: i64, shape: ['batch', 'total'] });
    }
    const cacheShape = this.onDevice ? ['cache_rows', kvHeads, 'cache_columns', headDim] : ['batch', kvHeads, 'past', headDim];
    for (let l = 0; l < layers; l++) {
      g.input({ name: INPUT.pastKey(l), elemType: f32, shape: cacheShape });
      g.input({ name: INPUT.pastValue(l), elemType: f32, shape: cacheShape });
    }
    if (lora) {
      const perRow = (k: string) => (this.onDevice ? ['batch', 1, k] : ['tokens', k]);
      g.input({ name: INPUT.loraColumns, elemType: f32, shape: perRow('lora_width') });
      g.input({ name: INPUT.loraRows, elemType: f32, shape: perRow('lora_adapters') });
      if (this.onDevice) {
        g.input({ name: INPUT.loraColumnSource, elemType: i64, shape: ['lora_width'] });
        g.input({ name: INPUT.loraAdapterSource, elemType: i64, shape: ['lora_adapters'] });
      }
      const [columns, adapters] = this.onDevice ? ['lora_table_columns', 'lora_table_slots'] : ['lora_width', 'lora_adapters'];
      for (const m of linears.filter((l) => this.loraModules.has(l.name))) {
        g.input({ name: INPUT.loraA(m.name), elemType: f32, shape: [columns, m.inFeatures] });
        g.input({ name: INPUT.loraB(m.name), elemType: f32, shape: [columns, m.outFeatures] });
        g.input({ name: INPUT.loraGain(m.name), elemType: f32, shape: [adapters, m.outFeatures] });
        g.input({ name: INPUT.loraShift(m.name), elemType: f32, shape: [adapters, m.outFeatures] });
      }
    }
    this.batchSeq = this.onDevice ? null : g.op('Slice', [g.op('Shape', [INPUT.embeds]), g.constInt64([0]), g.constInt64([2])]);
  }

  /** The token embedding table the caller must look rows up in (set by `embed`). */
  tokenEmbedding: string | null = null;

  weight(name: string, shape?: number[]): string {
    return this.g.weight(this.weights.ref(name, shape));
  }

  /**
   * The token embeddings `[N, hidden]`. They are an input the caller reads from the weights file
   * row by row: a Gather in the graph would hold the whole table in memory a second time whenever
   * the LM head is tied to it (ORT keeps the Gather's table beside the head's prepacked copy).
   */
  embed(table: string): string {
    this.weights.ref(table, [this.dims.vocabSize, this.dims.hidden]);
    this.tokenEmbedding = table;
    return this.rows(INPUT.embeds, this.dims.hidden);
  }

  /** `[B, T]` positions → `[N, hidden]` rows of a learned position table (small; kept in the graph). */
  positionEmbed(table: string): string {
    return this.rows(this.g.op('Gather', [this.weight(table), INPUT.positions]), this.dims.hidden);
  }

  /** `[B, T, k]` → the layout hidden states travel in: `[N, k]` (host cache) or unchanged (device cache). */
  private rows(x3: string, k: number): string {
    return this.onDevice ? x3 : this.g.op('Reshape', [x3, this.g.constInt64([-1, k])]);
  }

  add(a: string, b: string): string {
    return this.g.op('Add', [a, b]);
  }

  mul(a: string, b: string): string {
    return this.g.op('Mul', [a, b]);
  }

  split(x: string, sizes: number[]): string[] {
    return this.g.opN('Split', [x, this.g.constInt64(sizes)], sizes.length, { axis: -1 });
  }

  layerNorm(x: string, prefix: string, eps: number): string {
    const [y] = this.g.opN('LayerNormalization', [x, this.weight(`${prefix}.weight`), this.weight(`${prefix}.bias`)], 1, {
      axis: -1,
      epsilon: { float: eps },
    });
    return y!;
  }

  /**
   * The residual sum h + delta and its layer norm, in one kernel (ORT's SkipLayerNormalization): [sum, normed].
   */
  addLayerNorm(h: string, delta: string, prefix: string, eps: number): [string, string] {
    const inputs = [delta, h, this.weight(`${prefix}.weight`), this.weight(`${prefix}.bias`)];
    return this.skipNorm('SkipLayerNormalization', inputs, eps);
  }

  /** The residual sum h + delta and its RMS norm (see `rmsNorm`), in one kernel: [sum, normed]. */
  addRmsNorm(h: string, delta: string, weight: string, eps: number): [string, string] {
    return this.skipNorm('SkipSimplifiedLayerNormalization', [delta, h, this.weight(weight)], eps);
  }

  private skipNorm(op: string, inputs: string[], eps: number): [string, string] {
    // outputs: normed, mean, inv_std_var, input + skip
    const [normed, , , sum] = this.g.opN(op, inputs, [true, false, false, true], { epsilon: { float: eps } }, 'com.microsoft');
    return [sum!, normed!];
  }

  /**
   * y = x / sqrt(mean(x²) + eps) · w, in float32 as transformers computes it: ORT's one-kernel
   * RMS norm (CPU and WebGPU), where the same arithmetic as separate ops was seven nodes per norm.
   */
  rmsNorm(x: string, weight: string, eps: number): string {
    const [y] = this.g.opN('SimplifiedLayerNormalization', [x, this.weight(weight)], 1, { axis: -1, epsilon: { float: eps } });
    return y!;
  }

  /** gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
  geluTanh(x: string): string {
    const g = this.g;
    const cube = g.op('Mul', [g.op('Mul', [x, x]), x]);
    const inner = g.op('Mul', [g.op('Add', [x, g.op('Mul', [cube, g.scalar(0.044715)])]), g.scalar(Math.sqrt(2 / Math.PI))]);
    return g.op('Mul', [g.op('Mul', [x, g.scalar(0.5)]), g.op('Add', [g.op('Tanh', [inner]), g.scalar(1)])]);
  }

  silu(x: string): string {
    return this.g.op('Mul', [x, this.g.op('Sigmoid', [x])]);
  }

  /**
   * A base linear layer plus, when the graph carries LoRA, the per-row adapter delta.
   * x: [N, in] → [N, out] (host cache) or [B, T, in] → [B, T, out] (device cache).
   */
  linear(moduleName: string, x: string): string {
    const m = this.linearsByName.get(moduleName);
    if (!m) throw new Error(`architecture declares no linear "${moduleName}"`);
    const g = this.g;
    const baseBias = m.bias ? this.weight(m.bias, [m.outFeatures]) : null;
    const base = this.quant
      ? this.quantizedMatMul(x, m.weight, baseBias)
      : this.floatMatMul(x, m.weight, [m.outFeatures, m.inFeatures], m.fanInFanOut, baseBias);
    if (!this.lora || !this.loraModules.has(m.name)) return base;
    // The step is fed only the adapters its rows use, packed side by side (W columns in all, U
    // adapters), so the delta costs what the batch uses, not what the server could hold. Every
    // per-row weight comes per token (host) or as [B, 1, ·] (device), so nothing is reshaped here.
    const packed = this.packedLora(m.name);
    // h = x @ A_packedᵀ: [N, in] @ [in, W] → [N, W] (or [B, T, ·]), every used adapter's projection at once
    const h = this.timesTransposed(x, packed.a);
    // delta = (h ⊙ columns) @ B_packed: the row keeps its own adapter's block only, [N, W] @ [W, out];
    // B_packed holds s·Bᵀ per adapter, scale folded in
    const delta = g.op('MatMul', [g.op('Mul', [h, INPUT.loraColumns]), packed.b]);
    // y = (R @ gain) ⊙ (W x + b₀ + delta) + R @ shift, R = the row's adapter weights [N, U]: gain and
    // shift [U, out] fold DoRA's rescaling and LoRA's own bias (SlotTable.moduleRows); a plain row gets gain 1, shift 0
    const scaled = g.op('Mul', [g.op('Add', [base, delta]), g.op('MatMul', [INPUT.loraRows, packed.gain])]);
    return g.op('Add', [scaled, g.op('MatMul', [INPUT.loraRows, packed.shift])]);
  }

  /**
   * A module's packed LoRA tensors: fed packed (host cache), or gathered on the device from the
   * resident slot tables: A_packed[w] = A_table[column_source[w]], gain_packed[u] = gain_table[adapter_source[u]].
   */
  private packedLora(module: string): { a: string; b: string; gain: string; shift: string } {
    const names = { a: INPUT.loraA(module), b: INPUT.loraB(module), gain: INPUT.loraGain(module), shift: INPUT.loraShift(module) };
    if (!this.onDevice) return names;
    const gather = (table: string, source: string) => this.g.op('Gather', [table, source], { axis: 0 });
    return {
      a: gather(names.a, INPUT.loraColumnSource),
      b: gather(names.b, INPUT.loraColumnSource),
      gain: gather(names.gain, INPUT.loraAdapterSource),
      shift: gather(names.shift, INPUT.loraAdapterSource),
    };
  }

  /** x @ Mᵀ for a runtime matrix M `[k, in]`: Gemm's transB on 2-D rows; a transpose then a batched MatMul on [B, T, in]. */
  private timesTransposed(x: string, matrix: string): string {
    if (!this.onDevice) return this.g.op('Gemm', [x, matrix], { transB: 1 });
    return this.g.op('MatMul', [x, this.g.op('Transpose', [matrix], { perm: [1, 0] })]);
  }

  /**
   * y = x @ Wᵀ (+ b) for W `[out, in]` (`[in, out]` when fanInFanOut). On 2-D rows Gemm's transB reads
   * either layout without a copy; on [B, T, in] a MatMul takes W as `[in, out]`, which for `[out, in]`
   * weights is a Transpose of the initializer that ORT folds once at load.
   */
  private floatMatMul(x: string, weight: string, [out, inFeatures]: [number, number], fanInFanOut: boolean, bias: string | null): string {
    const w = this.weight(weight, fanInFanOut ? [inFeatures, out] : [out, inFeatures]);
    if (!this.onDevice) return this.g.op('Gemm', bias ? [x, w, bias] : [x, w], { transB: fanInFanOut ? 0 : 1 });
    const product = this.g.op('MatMul', [x, fanInFanOut ? w : this.g.op('Transpose', [w], { perm: [1, 0] })]);
    return bias ? this.g.op('Add', [product, bias]) : product;
  }

  /** The same product over the weight's quantized copy in the cache file (MatMulNBits adds the bias). */
  private quantizedMatMul(x: string, weight: string, bias: string | null): string {
    const q = this.quant!;
    return matMulNBits(this.g, x, cachedQuantized(this.g, q.entry, weight), bias, q.accuracyLevel);
  }

  private inverseFrequencies(): Float32Array {
    const { rope, headDim } = this.dims;
    if (!rope) throw new Error('architecture uses RoPE but dims.rope is null');
    return Float32Array.from(ropeInverseFrequencies(rope, headDim));
  }

  /**
   * cos/sin tables `[B, 1, T, D]` from position_ids (transformers' rotate_half convention), for the
   * device cache: there positions are int32 and [B, T] cannot become a flat token view without shape
   * arithmetic, so RoPE stays elementwise (`applyRope`) rather than ORT's RotaryEmbedding.
   */
  private ropeTables(): { cos: string; sin: string } {
    if (this.rope) return this.rope;
    const g = this.g;
    const inv = this.inverseFrequencies();
    const pos = g.op('Unsqueeze', [g.op('Cast', [INPUT.positions], { to: TensorDataType.FLOAT }), g.constInt64([2])]);
    // freqs[b, t, i] = pos[b, t] · inv_freq[i]; emb = [freqs, freqs]: [B, T, D]
    const freqs = g.op('Mul', [pos, g.constFloat(inv, [1, 1, inv.length])]);
    const emb = g.op('Unsqueeze', [g.op('Concat', [freqs, freqs], { axis: -1 }), g.constInt64([1])]);
    this.rope = { cos: g.op('Cos', [emb]), sin: g.op('Sin', [emb]) };
    return this.rope;
  }

  /**
   * RoPE on token rows [N, heads·D] in one kernel (host cache): ORT's RotaryEmbedding over a
   * [1, N, heads·D] view whose position ids start at 0, so token n reads row n of per-token tables
   * [N, D/2] built from position_ids — no table of every position the model allows. Same
   * arithmetic as `applyRope` (non-interleaved halves), which was six nodes per tensor per layer.
   */
  private rotary(rows: string, heads: number): string {
    const g = this.g;
    const { headDim } = this.dims;
    if (!this.tokenRope) {
      const inv = this.inverseFrequencies();
      const pos = g.op('Reshape', [g.op('Cast', [INPUT.positions], { to: TensorDataType.FLOAT }), g.constInt64([-1, 1])]);
      // freqs[n, i] = position[n] · inv_freq[i]: [N, D/2]
      const freqs = g.op('Mul', [pos, g.constFloat(inv, [1, inv.length])]);
      this.tokenRope = { cos: g.op('Cos', [freqs]), sin: g.op('Sin', [freqs]) };
    }
    const view = g.op('Reshape', [rows, g.constInt64([1, -1, heads * headDim])]);
    const { cos, sin } = this.tokenRope;
    return g.op('RotaryEmbedding', [view, g.constInt64([0]), cos, sin], { interleaved: 0, num_heads: heads }, 'com.microsoft');
  }

  /** x·cos + rotate_half(x)·sin, where rotate_half([x1, x2]) = [−x2, x1] on the last axis. */
  private applyRope(x: string, cos: string, sin: string): string {
    const g = this.g;
    const half = this.dims.headDim / 2;
    const [x1, x2] = g.opN('Split', [x, g.constInt64([half, half])], 2, { axis: -1 });
    const rotated = g.op('Concat', [g.op('Neg', [x2!]), x1!], { axis: -1 });
    return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rotated, sin])]);
  }

  /**
   * Additive mask [B, 1, G·T, S] over keys S = P past + T new: 0 where key j is visible to query t
   * (a real position, and for new tokens j ≤ t), −1e9 elsewhere; repeated for the G query heads
   * that share a KV head, as attention stacks them. With a sliding window w, a key must also lie
   * within the window: its position k > q − w for the query's position q (transformers'
   * sliding_window_overlay). Positions come from position_ids for new tokens; past column p holds
   * position p, since the cache keeps a row's positions 0..len-1 in order.
   */
  private attentionBias(window: number | null): string {
    const known = this.maskBias.get(window);
    if (known) return known;
    const g = this.g;
    let allowed = this.visibleKeys();
    if (window !== null) {
      const P = g.op('Squeeze', [this.pastPositions()], {});
      const batch = g.op('Slice', [this.batchSeq!, g.constInt64([0]), g.constInt64([1])]);
      const pastPos = g.op('Expand', [
        g.op('Unsqueeze', [g.op('Range', [g.constInt64([0], []), P, g.constInt64([1], [])]), g.constInt64([0])]),
        g.op('Concat', [batch, this.pastPositions()], { axis: 0 }),
      ]);
      // keyPos [B, 1, S]: 0..P-1 for the past, position_ids for the new tokens; queryPos [B, T, 1]
      const keyPos = g.op('Unsqueeze', [g.op('Concat', [pastPos, INPUT.positions], { axis: 1 }), g.constInt64([1])]);
      const queryPos = g.op('Unsqueeze', [INPUT.positions, g.constInt64([2])]);
      const inWindow = g.op('Greater', [keyPos, g.op('Sub', [queryPos, g.constInt64([window], [])])]);
      allowed = g.op('And', [allowed, inWindow]);
    }
    const bias = g.op('Unsqueeze', [g.op('Where', [allowed, g.scalar(0), g.scalar(-1e9)]), g.constInt64([1])]);
    const groups = this.dims.heads / this.dims.kvHeads;
    const tiled = groups === 1 ? bias : g.op('Tile', [bias, g.constInt64([1, 1, groups, 1])]);
    this.maskBias.set(window, tiled);
    return tiled;
  }

  /** [B, T, S]: key j is a real position of the row and, for new tokens, not after query t. */
  private visibleKeys(): string {
    if (this.visible) return this.visible;
    const g = this.g;
    const scalarAt = (shape: string, i: number) => g.op('Gather', [shape, g.constInt64([i], [])], { axis: 0 });
    const t = scalarAt(this.batchSeq!, 1);
    const s = scalarAt(g.op('Shape', [INPUT.mask]), 1);
    const one = g.constInt64([1], []);
    const queryCol = g.op('Unsqueeze', [g.op('Range', [g.op('Sub', [s, t]), s, one]), g.constInt64([1])]);
    const keyCol = g.op('Unsqueeze', [g.op('Range', [g.constInt64([0], []), s, one]), g.constInt64([0])]);
    const causal = g.op('LessOrEqual', [keyCol, queryCol]);
    const notPad = g.op('Unsqueeze', [g.op('Cast', [INPUT.mask], { to: TensorDataType.BOOL }), g.constInt64([1])]);
    this.visible = g.op('And', [causal, notPad]);
    return this.visible;
  }

  /**
   * Causal grouped-query attention over the caller's cache plus this step's tokens.
   * q: [N, H·D], k/v: [N, kvH·D] → [N, H·D]. The cache (`past_key.l` [B, kvH, P, D]) is only read:
   * the graph outputs this step's keys/values alone, so no step ever copies the cache (ORT's Node
   * binding copies every output, and inputs are wrapped without a copy).
   */
  attention(layer: number, q2d: string, k2d: string, v2d: string, options: { rope: boolean }): string {
    if (this.onDevice) return this.deviceAttention(layer, q2d, k2d, v2d, options);
    const g = this.g;
    const { heads, kvHeads, headDim } = this.dims;
    const groups = heads / kvHeads;
    const shape = (...rest: number[]) => g.op('Concat', [this.batchSeq!, g.constInt64(rest)], { axis: 0 });
    // q: [B, T, kvH, G, D] → [B, kvH, G, T, D];  k, v: [B, T, kvH, D] → [B, kvH, T, D]
    const [qRows, kRows] = options.rope ? [this.rotary(q2d, heads), this.rotary(k2d, kvHeads)] : [q2d, k2d];
    const q = g.op('Transpose', [g.op('Reshape', [qRows, shape(kvHeads, groups, headDim)])], { perm: [0, 2, 3, 1, 4] });
    let k = g.op('Transpose', [g.op('Reshape', [kRows, shape(kvHeads, headDim)])], { perm: [0, 2, 1, 3] });
    let v = g.op('Transpose', [g.op('Reshape', [v2d, shape(kvHeads, headDim)])], { perm: [0, 2, 1, 3] });
    const newShape = ['batch', kvHeads, 'seq', headDim];
    k = g.output(k, { name: OUTPUT.newKey(layer), elemType: TensorDataType.FLOAT, shape: newShape });
    v = g.output(v, { name: OUTPUT.newValue(layer), elemType: TensorDataType.FLOAT, shape: newShape });
    // the G query heads of a KV head stacked as rows: [B, kvH, G·T, D], so each (row, KV head) is
    // one plain GEMM against its keys, with no broadcast over G.
    const qs = g.op('Reshape', [q, g.constInt64([0, 0, -1, headDim])]);
    // scores = [q·Kpastᵀ, q·Knewᵀ]/√D: [B, kvH, G·T, P] ++ [B, kvH, G·T, T] → [B, kvH, G·T, P + T]
    const scale = { float: 1 / Math.sqrt(headDim) };
    const past = g.op('FusedMatMul', [qs, INPUT.pastKey(layer)], { transB: 1, alpha: scale }, 'com.microsoft');
    const own = g.op('FusedMatMul', [qs, k], { transB: 1, alpha: scale }, 'com.microsoft');
    // probs over each row's real past positions and its new tokens up to the query's own
    const probs = g.op(
      'Softmax',
      [g.op('Add', [g.op('Concat', [past, own], { axis: -1 }), this.attentionBias(this.dims.slidingWindows[layer] ?? null)])],
      { axis: -1 },
    );
    const P = this.pastPositions();
    const axis = g.constInt64([3]);
    const probsPast = g.op('Slice', [probs, g.constInt64([0]), P, axis]);
    const probsOwn = g.op('Slice', [probs, P, g.constInt64([Number.MAX_SAFE_INTEGER]), axis]);
    // ctx = probs_past @ Vpast + probs_new @ Vnew: [B, kvH, G·T, D] → [B, T, kvH, G, D] → [N, H·D]
    const ctx = g.op('Add', [g.op('MatMul', [probsPast, INPUT.pastValue(layer)]), g.op('MatMul', [probsOwn, v])]);
    const ctx5 = g.op('Reshape', [ctx, g.constInt64([0, 0, groups, -1, headDim])]);
    return g.op('Reshape', [g.op('Transpose', [ctx5], { perm: [0, 3, 1, 2, 4] }), g.constInt64([-1, heads * headDim])]);
  }

  /**
   * Attention over a device-resident cache. q: [B, T, H·D], k/v: [B, T, kvH·D] → [B, T, H·D].
   * The step's keys/values are scattered into the whole cache at (row, head, position), the result
   * is the `present_*` output, and each batch row attends over its own cache row (positions
   * 0..capacity; the causal bias hides everything after the query's own position, so stale or
   * scratch entries are never seen). Every reshape target is a constant.
   */
  private deviceAttention(layer: number, q3: string, k3: string, v3: string, options: { rope: boolean }): string {
    const g = this.g;
    const { heads, kvHeads, headDim } = this.dims;
    const groups = heads / kvHeads;
    const f32 = TensorDataType.FLOAT;
    // q: [B, T, kvH, G, D] → [B, kvH, G, T, D];  k, v: [B, T, kvH, D] → [B, kvH, T, D]
    let q = g.op('Transpose', [g.op('Reshape', [q3, g.constInt64([0, 0, kvHeads, groups, headDim])])], { perm: [0, 2, 3, 1, 4] });
    let k = g.op('Transpose', [g.op('Reshape', [k3, g.constInt64([0, 0, kvHeads, headDim])])], { perm: [0, 2, 1, 3] });
    const v = g.op('Transpose', [g.op('Reshape', [v3, g.constInt64([0, 0, kvHeads, headDim])])], { perm: [0, 2, 1, 3] });
    if (options.rope) {
      const { cos, sin } = this.ropeTables();
      q = this.applyRope(q, g.op('Unsqueeze', [cos, g.constInt64([1])]), g.op('Unsqueeze', [sin, g.constInt64([1])]));
      k = this.applyRope(k, cos, sin);
    }
    const cacheShape = ['cache_rows', kvHeads, 'cache_columns', headDim];
    // cache[kv_index[b, h, t]] = k[b, h, t]: [R, kvH, C, D] with [B, kvH, T] D-vectors written in
    const present = (past: string, update: string, name: string) =>
      g.output(g.op('ScatterND', [past, INPUT.kvIndex, update]), { name, elemType: f32, shape: cacheShape });
    const keysAll = present(INPUT.pastKey(layer), k, OUTPUT.presentKey(layer));
    const valuesAll = present(INPUT.pastValue(layer), v, OUTPUT.presentValue(layer));
    // each batch row's own cache row: [B, kvH, C, D]
    const keys = g.op('Gather', [keysAll, INPUT.kvRows], { axis: 0 });
    const values = g.op('Gather', [valuesAll, INPUT.kvRows], { axis: 0 });
    // q pre-scaled by 1/√D, the G query heads of a KV head stacked as rows: [B, kvH, G·T, D]
    const qs = g.op('Reshape', [g.op('Mul', [q, g.scalar(1 / Math.sqrt(headDim))]), g.constInt64([0, 0, -1, headDim])]);
    // scores = q · Kᵀ: [B, kvH, G·T, D] @ [B, kvH, D, C] → [B, kvH, G·T, C]
    const scores = g.op('MatMul', [qs, g.op('Transpose', [keys], { perm: [0, 1, 3, 2] })]);
    const probs = g.op('Softmax', [g.op('Add', [scores, this.deviceAttentionBias(keysAll, this.dims.slidingWindows[layer] ?? null)])], {
      axis: -1,
    });
    // ctx = probs @ V: [B, kvH, G·T, D] → [B, kvH, G, T, D] → [B, T, kvH, G, D] → [B, T, H·D]
    const ctx5 = g.op('Reshape', [g.op('MatMul', [probs, values]), g.constInt64([0, 0, groups, -1, headDim])]);
    return g.op('Reshape', [g.op('Transpose', [ctx5], { perm: [0, 3, 1, 2, 4] }), g.constInt64([0, 0, heads * headDim])]);
  }

  /**
   * Additive bias [B, 1, G·T, C] over cache columns: 0 where column j (holding position j) is at or
   * before the query's position q (and, with a sliding window w, after q − w), −1e9 elsewhere.
   * Positions are compared as floats (exact below 2²⁴) so no int64 arithmetic leaves the device.
   */
  private deviceAttentionBias(cache: string, window: number | null): string {
    const known = this.maskBias.get(window);
    if (known) return known;
    const g = this.g;
    // column positions 0..C-1 as [1, 1, 1, C], counted on the device from the cache's own extent
    this.keyPositions ??= (() => {
      const column = g.op('Slice', [cache, g.constInt64([0, 0, 0]), g.constInt64([1, 1, 1]), g.constInt64([0, 1, 3])]);
      const ones = g.op('Add', [g.op('Mul', [column, g.scalar(0)]), g.scalar(1)]);
      const counted = g.op('Sub', [g.op('CumSum', [ones, g.constInt64([2], [])]), g.scalar(1)]);
      return g.op('Reshape', [counted, g.constInt64([1, 1, 1, -1])]);
    })();
    // query positions [B, 1, T, 1]
    const queryPos = g.op('Unsqueeze', [g.op('Cast', [INPUT.positions], { to: TensorDataType.FLOAT }), g.constInt64([1, 3])]);
    let allowed = g.op('LessOrEqual', [this.keyPositions, queryPos]);
    if (window !== null) allowed = g.op('And', [allowed, g.op('Greater', [this.keyPositions, g.op('Sub', [queryPos, g.scalar(window)])])]);
    const bias = g.op('Where', [allowed, g.scalar(0), g.scalar(-1e9)]);
    const groups = this.dims.heads / this.dims.kvHeads;
    const tiled = groups === 1 ? bias : g.op('Tile', [bias, g.constInt64([1, 1, groups, 1])]);
    this.maskBias.set(window, tiled);
    return tiled;
  }

  /** P, the past positions fed this step, as a 1-element int64 tensor. */
  private pastPositions(): string {
    this.pastLength ??= this.g.op('Slice', [this.g.op('Shape', [INPUT.pastKey(0)]), this.g.constInt64([2]), this.g.constInt64([3])]);
    return this.pastLength;
  }

  /**
   * [N, hidden] → [M, hidden]: the positions named by `logit_rows` (the caller picks each row's last
   * position, or every position of a prompt whose logprobs were asked for), so the LM head, the
   * widest GEMM, runs only where logits are read.
   */
  logitPositions(x: string): string {
    const flat = this.onDevice ? this.g.op('Reshape', [x, this.g.constInt64([-1, this.dims.hidden])]) : x;
    return this.g.op('Gather', [flat, INPUT.logitRows], { axis: 0 });
  }

  /** logits[m] = h[m] @ Wᵀ: [M, V]. */
  logits(h: string, headWeight: string): void {
    const { vocabSize, hidden } = this.dims;
    const logits = this.quant
      ? this.quantizedMatMul(h, headWeight, null)
      : this.floatMatMul(h, headWeight, [vocabSize, hidden], false, null);
    this.g.output(logits, { name: OUTPUT.logits, elemType: TensorDataType.FLOAT, shape: ['logit_rows', this.dims.vocabSize] });
  }
}
