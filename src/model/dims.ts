/** Architecture-neutral sizes of a decoder-only model, read from its config.json. */
export interface RopeConfig {
  theta: number;
  /** `default` | `linear` | `llama3`, as in transformers' rope_type. */
  type: 'default' | 'linear' | 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositions: number;
}

export interface ModelDims {
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  maxPositions: number;
  normEps: number;
  tieWordEmbeddings: boolean;
  rope: RopeConfig | null;
  /**
   * Per layer: the sliding attention window (a query at position q sees keys at positions
   * k with q − window < k ≤ q, transformers' sliding_window_overlay), or null for full attention.
   */
  slidingWindows: Array<number | null>;
  /** Which linear layers carry a bias (Qwen2: q/k/v only; GPT-2: all). */
  bias: { qkv: boolean; out: boolean; mlp: boolean };
}

/** One linear layer of the base model, named as PEFT names it (the LoRA target namespace). */
export interface LinearModule {
  /** Full module path, e.g. `model.layers.3.self_attn.q_proj` or `transformer.h.0.attn.c_attn`. */
  name: string;
  layer: number;
  inFeatures: number;
  outFeatures: number;
  weight: string;
  bias: string | null;
  /** Weight stored `[in, out]` (GPT-2 Conv1D) rather than torch Linear's `[out, in]`. */
  fanInFanOut: boolean;
}

/** Inverse RoPE frequencies in float64, with Llama-3 / linear scaling applied as transformers does. */
export function ropeInverseFrequencies(rope: RopeConfig, headDim: number): Float64Array {
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / rope.theta ** ((2 * i) / headDim);
  if (rope.type === 'linear') for (let i = 0; i < half; i++) inv[i]! /= rope.factor;
  if (rope.type === 'llama3') {
    const lowWavelen = rope.originalMaxPositions / rope.lowFreqFactor;
    const highWavelen = rope.originalMaxPositions / rope.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i]!;
      if (wavelen > lowWavelen) inv[i]! /= rope.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (rope.originalMaxPositions / wavelen - rope.lowFreqFactor) / (rope.highFreqFactor - rope.lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i]! / rope.factor) + smooth * inv[i]!;
      }
    }
  }
  return inv;
}
