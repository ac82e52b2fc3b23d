import type { GraphBuilder } from './graph-builder.js';
import { ropeInverseFrequencies, type LinearModule, type ModelDims } from './dims.js';
import type { WeightStore } from './weights.js';
import { TensorDataType } from './onnx-proto.js';

/**
 * Sizes of the LoRA slot tensors compiled into the graph; null builds a plain base-model graph.
 * `slots` counts slot 0, the base model, which holds no tensors.
 */
export interface LoraLayout {
  slots: number;
  maxRank: number;
}

export const INPUT = {
  ids: 'input_ids',
  positions: 'position_ids',
  mask: 'attention_mask',
  slot: 'lora_slot',
  pastKey: (l: number) => `past_key.${l}`,
  pastValue: (l: number) => `past_value.${l}`,
  loraA: (m: string) => `lora_A.${m}`,
  loraB: (m: string) => `lora_B.${m}`,
  loraBias: (m: string) => `lora_bias.${m}`,
} as const;
export const OUTPUT = {
  logits: 'logits',
  presentKey: (l: number) => `present_key.${l}`,
  presentValue: (l: number) => `present_value.${l}`,
} as const;

/**
 * The operations an architecture's forward pass is written in. Hidden states travel as 2-D
 * `[N = batch·seq, features]` so every linear layer is one Gemm; attention reshapes locally.
 * Padding is on the left, so each row's last position is the last column.
 */
export class GraphOps {
  private readonly linearsByName: Map<string, LinearModule>;
  private readonly batchSeq: string;
  private maskBias: string | null = null;
  private slotMasks: { columns: string; slots: string } | null = null;
  private rope: { cos: string; sin: string } | null = null;

  constructor(
    readonly g: GraphBuilder,
    readonly dims: ModelDims,
    readonly weights: WeightStore,
    linears: LinearModule[],
    readonly lora: LoraLayout | null,
    /** The linear layers that get LoRA slot inputs (all of them unless the engine narrows it). */
    private readonly loraModules: ReadonlySet<string> = new Set(linears.map((m) => m.name)),
  ) {
    this.linearsByName = new Map(linears.map((m) => [m.name, m]));
    const { kvHeads, headDim, layers } = dims;
    const i64 = TensorDataType.INT64;
    const f32 = TensorDataType.FLOAT;
    g.input({ name: INPUT.ids, elemType: i64, shape: ['batch', 'seq'] });
    g.input({ name: INPUT.positions, elemType: i64, shape: ['batch', 'seq'] });
    g.input({ name: INPUT.mask, elemType: i64, shape: ['batch', 'total'] });
    for (let l = 0; l < layers; l++) {
      g.input({ name: INPUT.pastKey(l), elemType: f32, shape: ['batch', kvHeads, 'past', headDim] });
      g.input({ name: INPUT.pastValue(l), elemType: f32, shape: ['batch', kvHeads, 'past', headDim] });
    }
    if (lora) {
      g.input({ name: INPUT.slot, elemType: i64, shape: ['batch'] });
      const width = (lora.slots - 1) * lora.maxRank;
      for (const m of linears.filter((l) => this.loraModules.has(l.name))) {
        g.input({ name: INPUT.loraA(m.name), elemType: f32, shape: [m.inFeatures, width] });
        g.input({ name: INPUT.loraB(m.name), elemType: f32, shape: [width, m.outFeatures] });
        g.input({ name: INPUT.loraBias(m.name), elemType: f32, shape: [lora.slots - 1, m.outFeatures] });
      }
    }
    this.batchSeq = g.op('Shape', [INPUT.ids]);
  }

  weight(name: string, shape?: number[]): string {
    return this.g.weight(this.weights.ref(name, shape));
  }

  /** `[B, T]` ids → `[N, hidden]` rows of the embedding table. */
  embed(table: string, ids: string = INPUT.ids): string {
    const rows = this.g.op('Gather', [this.weight(table), ids]);
    return this.g.op('Reshape', [rows, this.g.constInt64([-1, this.dims.hidden])]);
  }

  positionEmbed(table: string): string {
    return this.embed(table, INPUT.positions);
  }

  add(a: string, b: string): string {
    return this.g.op('Add', [a, b]);
  }

  mul(a: string, b: string): string {
    return this.g.op('Mul', [a, b]);
  }

  split(x: string, sizes: number[]): string[] {
    return this.g.opN('Split', [x, this.g.constInt64(sizes)], sizes.length, { axis: 1 });
  }

  layerNorm(x: string, prefix: string, eps: number): string {
    const [y] = this.g.opN('LayerNormalization', [x, this.weight(`${prefix}.weight`), this.weight(`${prefix}.bias`)], 1, { axis: -1, epsilon: { float: eps } });
    return y!;
  }

  /** y = x / sqrt(mean(x²) + eps) · w, in float32 as transformers computes it. */
  rmsNorm(x: string, weight: string, eps: number): string {
    const g = this.g;
    const meanSquare = g.op('ReduceMean', [g.op('Mul', [x, x])], { axes: [-1], keepdims: 1 });
    const inv = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [meanSquare, g.scalar(eps)])])]);
    return g.op('Mul', [g.op('Mul', [x, inv]), this.weight(weight)]);
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
   * x: [N, in] → [N, out].
   */
  linear(moduleName: string, x: string): string {
    const m = this.linearsByName.get(moduleName);
    if (!m) throw new Error(`architecture declares no linear "${moduleName}"`);
    const g = this.g;
    const w = this.weight(m.weight, m.fanInFanOut ? [m.inFeatures, m.outFeatures] : [m.outFeatures, m.inFeatures]);
    const gemmInputs = m.bias ? [x, w, this.weight(m.bias, [m.outFeatures])] : [x, w];
    // y[n] = x[n] @ W (+ b); Gemm's transB reads torch's [out, in] layout without a copy.
    const base = g.op('Gemm', gemmInputs, { transB: m.fanInFanOut ? 0 : 1 });
    if (!this.lora || !this.loraModules.has(m.name)) return base;
    const { columns, slots } = this.loraMasks();
    const R = this.lora.maxRank;
    const width = (this.lora.slots - 1) * R;
    // h[n] = x[n] @ A_all: [N, in] @ [in, (S-1)·R] → [N, (S-1)·R], every slot's projection at once
    const h = g.op('Reshape', [g.op('MatMul', [x, INPUT.loraA(m.name)]), this.shape3(width)]);
    // h[b, t, s·R + k] *= (slot[b] == s): keep only the row's own slot block; base rows keep nothing
    const own = g.op('Reshape', [g.op('Mul', [h, columns]), g.constInt64([-1, width])]);
    // delta[n] = h[n] @ B_all: [N, (S-1)·R] @ [(S-1)·R, out]; B_all holds s·Bᵀ per slot, scale folded in
    const delta = g.op('MatMul', [own, INPUT.loraB(m.name)]);
    // bias[b] = onehot(slot[b]) @ bias_all: [B, S-1] @ [S-1, out], broadcast over the row's tokens
    const bias = g.op('Unsqueeze', [g.op('MatMul', [slots, INPUT.loraBias(m.name)]), g.constInt64([1])]);
    const biasRows = g.op('Reshape', [g.op('Add', [g.op('Reshape', [delta, this.shape3(m.outFeatures)]), bias]), g.constInt64([-1, m.outFeatures])]);
    return g.op('Add', [base, biasRows]);
  }

  /**
   * One-hot masks of each row's slot, built once per graph: `slots` [B, S-1] (slot 0, the base
   * model, matches no column) and `columns` [B, 1, (S-1)·R], the same repeated over each rank.
   */
  private loraMasks(): { columns: string; slots: string } {
    if (this.slotMasks) return this.slotMasks;
    const g = this.g;
    const { slots: S, maxRank: R } = this.lora!;
    const ids = g.constInt64(Array.from({ length: S - 1 }, (_, i) => i + 1), [1, S - 1]);
    const onehot = g.op('Cast', [g.op('Equal', [g.op('Unsqueeze', [INPUT.slot, g.constInt64([1])]), ids])], { to: TensorDataType.FLOAT });
    const perRank = g.op('Expand', [g.op('Unsqueeze', [onehot, g.constInt64([2])]), g.constInt64([1, 1, R])]);
    const columns = g.op('Reshape', [perRank, g.constInt64([0, 1, (S - 1) * R])]);
    this.slotMasks = { columns, slots: onehot };
    return this.slotMasks;
  }

  /** [B, T, k] as a shape tensor for the current batch. */
  private shape3(k: number): string {
    return this.g.op('Concat', [this.batchSeq, this.g.constInt64([k])], { axis: 0 });
  }

  /** cos/sin tables `[B, 1, T, D]` from position_ids (transformers' rotate_half convention). */
  private ropeTables(): { cos: string; sin: string } {
    if (this.rope) return this.rope;
    const { rope, headDim } = this.dims;
    if (!rope) throw new Error('architecture uses RoPE but dims.rope is null');
    const g = this.g;
    const inv = Float32Array.from(ropeInverseFrequencies(rope, headDim));
    const pos = g.op('Unsqueeze', [g.op('Cast', [INPUT.positions], { to: TensorDataType.FLOAT }), g.constInt64([2])]);
    // freqs[b, t, i] = pos[b, t] · inv_freq[i]; emb = [freqs, freqs]: [B, T, D]
    const freqs = g.op('Mul', [pos, g.constFloat(inv, [1, 1, inv.length])]);
    const emb = g.op('Unsqueeze', [g.op('Concat', [freqs, freqs], { axis: -1 }), g.constInt64([1])]);
    this.rope = { cos: g.op('Cos', [emb]), sin: g.op('Sin', [emb]) };
    return this.rope;
  }

  /** x·cos + rotate_half(x)·sin, where rotate_half([x1, x2]) = [−x2, x1] on the last axis. */
  private applyRope(x: string, cos: string, sin: string): string {
    const g = this.g;
    const half = this.dims.headDim / 2;
    const [x1, x2] = g.opN('Split', [x, g.constInt64([half, half])], 2, { axis: -1 });
    const rotated = g.op('Concat', [g.op('Neg', [x2!]), x1!], { axis: -1 });
    return g.op('Add', [g.op('Mul', [x, cos]), g.op('Mul', [rotated, sin])]);
  }

  /** Additive mask [B, 1, 1, T, S]: 0 where key j is visible to query t (j ≤ past+t and not padding), −1e9 elsewhere. */
  private attentionBias(): string {
    if (this.maskBias) return this.maskBias;
    const g = this.g;
    const scalarAt = (shape: string, i: number) => g.op('Gather', [shape, g.constInt64([i], [])], { axis: 0 });
    const t = scalarAt(this.batchSeq, 1);
    const s = scalarAt(g.op('Shape', [INPUT.mask]), 1);
    const one = g.constInt64([1], []);
    const queryPos = g.op('Unsqueeze', [g.op('Range', [g.op('Sub', [s, t]), s, one]), g.constInt64([1])]);
    const keyPos = g.op('Unsqueeze', [g.op('Range', [g.constInt64([0], []), s, one]), g.constInt64([0])]);
    const causal = g.op('LessOrEqual', [keyPos, queryPos]);
    const notPad = g.op('Unsqueeze', [g.op('Cast', [INPUT.mask], { to: TensorDataType.BOOL }), g.constInt64([1])]);
    const allowed = g.op('And', [causal, notPad]);
    const bias = g.op('Where', [allowed, g.scalar(0), g.scalar(-1e9)]);
    this.maskBias = g.op('Unsqueeze', [bias, g.constInt64([1, 2])]);
    return this.maskBias;
  }

  /**
   * Causal grouped-query attention over past + current keys. q: [N, H·D], k/v: [N, kvH·D].
   * Appends this step's keys/values to the cache outputs and returns [N, H·D].
   */
  attention(layer: number, q2d: string, k2d: string, v2d: string, options: { rope: boolean }): string {
    const g = this.g;
    const { heads, kvHeads, headDim } = this.dims;
    const groups = heads / kvHeads;
    const shape = (...rest: number[]) => g.op('Concat', [this.batchSeq, g.constInt64(rest)], { axis: 0 });
    // q: [B, T, kvH, G, D] → [B, kvH, G, T, D];  k, v: [B, T, kvH, D] → [B, kvH, T, D]
    let q = g.op('Transpose', [g.op('Reshape', [q2d, shape(kvHeads, groups, headDim)])], { perm: [0, 2, 3, 1, 4] });
    let k = g.op('Transpose', [g.op('Reshape', [k2d, shape(kvHeads, headDim)])], { perm: [0, 2, 1, 3] });
    const v = g.op('Transpose', [g.op('Reshape', [v2d, shape(kvHeads, headDim)])], { perm: [0, 2, 1, 3] });
    if (options.rope) {
      const { cos, sin } = this.ropeTables();
      const cos5 = g.op('Unsqueeze', [cos, g.constInt64([1])]);
      const sin5 = g.op('Unsqueeze', [sin, g.constInt64([1])]);
      q = this.applyRope(q, cos5, sin5);
      k = this.applyRope(k, cos, sin);
    }
    // present[b] = [past[b]; new[b]] along time: [B, kvH, S, D]
    const cacheShape = ['batch', kvHeads, 'total', headDim];
    const presentK = g.output(g.op('Concat', [INPUT.pastKey(layer), k], { axis: 2 }), { name: OUTPUT.presentKey(layer), elemType: TensorDataType.FLOAT, shape: cacheShape });
    const presentV = g.output(g.op('Concat', [INPUT.pastValue(layer), v], { axis: 2 }), { name: OUTPUT.presentValue(layer), elemType: TensorDataType.FLOAT, shape: cacheShape });
    // scores[b, h, g, t, s] = q · k / √D + mask: [B, kvH, G, T, S]; the Transpose feeds MatMul
    // directly so ORT fuses it into one FusedMatMul instead of copying the whole cache.
    const kT = g.op('Transpose', [g.op('Unsqueeze', [presentK, g.constInt64([2])])], { perm: [0, 1, 2, 4, 3] });
    const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [q, kT]), g.scalar(1 / Math.sqrt(headDim))]), this.attentionBias()]);
    const probs = g.op('Softmax', [scores], { axis: -1 });
    // ctx = probs @ v: [B, kvH, G, T, D] → [B, T, kvH, G, D] → [N, H·D]
    const ctx = g.op('MatMul', [probs, g.op('Unsqueeze', [presentV, g.constInt64([2])])]);
    return g.op('Reshape', [g.op('Transpose', [ctx], { perm: [0, 3, 1, 2, 4] }), g.constInt64([-1, heads * headDim])]);
  }

  /** [N, hidden] → [B, hidden]: each row's last position (prompts are left-padded). */
  lastPosition(x: string): string {
    const g = this.g;
    const x3 = g.op('Reshape', [x, this.shape3(this.dims.hidden)]);
    return g.op('Gather', [x3, g.constInt64([-1], [])], { axis: 1 });
  }

  /** logits[b] = h[b] @ Wᵀ: [B, V]. */
  logits(h: string, headWeight: string): void {
    const w = this.weight(headWeight, [this.dims.vocabSize, this.dims.hidden]);
    const logits = this.g.op('Gemm', [h, w], { transB: 1 });
    this.g.output(logits, { name: OUTPUT.logits, elemType: TensorDataType.FLOAT, shape: ['batch', this.dims.vocabSize] });
  }
}
