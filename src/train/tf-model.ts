/**
 * The Llama family's forward pass in TensorFlow.js, over the same HF weights the engine serves,
 * with trainable LoRA layers (PEFT layout and initialisation) or, in full mode, every weight
 * trainable. Used for training only; serving runs on ONNX Runtime.
 */
import { UnsupportedArchitectureError } from '../errors.js';
import { ropeInverseFrequencies, type HfModel, type LinearModule } from '../model/index.js';
import { loraScale } from '../lora/index.js';
import { rng } from '../util/rng.js';
import { tf } from './tf-backend.js';

export interface LoraTrainConfig {
  r: number;
  alpha: number;
  dropout: number;
  useRslora: boolean;
  /** Modules adapted (already resolved against the model). */
  modules: LinearModule[];
}

export interface LoraLayer {
  module: LinearModule;
  /** lora_A.weightᵀ [in, r] */
  At: tf.Variable;
  /** lora_B.weightᵀ [r, out] */
  Bt: tf.Variable;
  scale: number;
}

/**
 * a @ b for rank-2 or rank-3 tensors, with a gradient that transposes explicitly and then runs plain
 * matmuls: tfjs-wasm's matmul with transposeA/transposeB (what the built-in gradient uses) runs
 * about ten times slower than a transpose followed by a plain one.
 */
const swapLast = (t: tf.Tensor) => tf.transpose(t, t.rank === 3 ? [0, 2, 1] : [1, 0]);
const mm = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([a, b]);
  return {
    value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    // d(a@b)/da = dy @ bᵀ;  d(a@b)/db = aᵀ @ dy
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [
      tf.matMul(dy as tf.Tensor2D, swapLast(saved[1]!) as tf.Tensor2D),
      tf.matMul(swapLast(saved[0]!) as tf.Tensor2D, dy as tf.Tensor2D),
    ],
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (a: tf.Tensor, b: tf.Tensor) => tf.Tensor;

/**
 * Linear weights are held transposed, [in, out]: tfjs-wasm's matmul with transposeB runs an order
 * of magnitude slower than without. `exportWeights` hands them back in Hugging Face layout.
 */
export class TfCausalLM {
  readonly weights = new Map<string, tf.Variable>();
  private readonly transposed = new Set<string>();
  readonly lora = new Map<string, LoraLayer>();
  private readonly linears: Map<string, LinearModule>;

  constructor(
    readonly model: HfModel,
    readonly mode: 'lora' | 'full',
    loraConfig: LoraTrainConfig | null,
    seed: number,
  ) {
    if (model.arch.family !== 'llama')
      throw new UnsupportedArchitectureError(`training supports the Llama family; ${model.arch.family} is served but not trained`);
    this.linears = new Map(model.linears.map((m) => [m.name, m]));
    const linearWeights = new Set(model.linears.map((m) => m.weight));
    if (!model.dims.tieWordEmbeddings) linearWeights.add('lm_head.weight');
    for (const name of model.weights.names()) {
      const ref = model.weights.ref(name);
      const t = tf.tensor(model.weights.readF32(name), ref.shape);
      if (linearWeights.has(name)) this.transposed.add(name);
      this.weights.set(name, tf.variable(linearWeights.has(name) ? tf.transpose(t) : t, mode === 'full'));
    }
    if (loraConfig) {
      const r = rng(seed);
      const scale = loraScale(loraConfig.alpha, loraConfig.r, loraConfig.useRslora);
      for (const m of loraConfig.modules) {
        // PEFT: A ~ kaiming_uniform(a=√5) = U(−1/√in, 1/√in); B = 0, so training starts at the base model.
        const bound = 1 / Math.sqrt(m.inFeatures);
        const a = Float32Array.from({ length: loraConfig.r * m.inFeatures }, () => (r.next() * 2 - 1) * bound);
        this.lora.set(m.name, {
          module: m,
          At: tf.variable(tf.transpose(tf.tensor2d(a, [loraConfig.r, m.inFeatures])), true),
          Bt: tf.variable(tf.zeros([loraConfig.r, m.outFeatures]), true),
          scale,
        });
      }
    }
  }

  trainableVariables(): tf.Variable[] {
    if (this.mode === 'full') return [...this.weights.values()];
    return [...this.lora.values()].flatMap((l) => [l.At, l.Bt]);
  }

  /** Base weights in Hugging Face layout. */
  exportWeights(): Map<string, { shape: number[]; data: Float32Array }> {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, v] of this.weights) {
      const t = this.transposed.has(name) ? tf.transpose(v) : v;
      out.set(name, { shape: t.shape, data: t.dataSync() as Float32Array });
      if (t !== v) t.dispose();
    }
    return out;
  }

  /** LoRA weights in PEFT layout: lora_A.weight [r, in], lora_B.weight [out, r]. */
  exportLora(): Map<string, { module: LinearModule; A: Float32Array; B: Float32Array }> {
    const out = new Map<string, { module: LinearModule; A: Float32Array; B: Float32Array }>();
    for (const [name, l] of this.lora) {
      out.set(name, {
        module: l.module,
        A: tf.tidy(() => tf.transpose(l.At).dataSync() as Float32Array),
        B: tf.tidy(() => tf.transpose(l.Bt).dataSync() as Float32Array),
      });
    }
    return out;
  }

  private w(name: string): tf.Variable {
    const v = this.weights.get(name);
    if (!v) throw new Error(`weight ${name} missing`);
    return v;
  }

  /** y = x Wᵀ + b + s · dropout(x) Aᵀ Bᵀ.  x: [N, in] → [N, out] */
  private linear(name: string, x: tf.Tensor2D, dropout: number): tf.Tensor2D {
    const m = this.linears.get(name)!;
    let y = mm(x, this.w(m.weight));
    if (m.bias) y = tf.add(y, this.w(m.bias));
    const l = this.lora.get(name);
    if (l) {
      const xd = dropout > 0 ? tf.dropout(x, dropout) : x;
      y = tf.add(y, tf.mul(mm(mm(xd, l.At), l.Bt), l.scale));
    }
    return y as tf.Tensor2D;
  }

  private rmsNorm(x: tf.Tensor, weight: string): tf.Tensor {
    const ms = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, this.model.dims.normEps))), this.w(weight));
  }

  /**
   * Logits for every position of right-padded rows: ids [B, T] → [B, T, V]. Padding sits after
   * each row's tokens, so the causal mask alone keeps real positions from seeing it.
   */
  forward(ids: tf.Tensor2D, loraDropout = 0): tf.Tensor3D {
    const d = this.model.dims;
    const [B, T] = ids.shape;
    const N = B * T;
    const { heads: H, kvHeads: KV, headDim: D } = d;
    // Embedding as one-hot × table: its gradient needs no scatter kernel (missing on wasm).
    const onehot = tf.oneHot(tf.reshape(ids, [N]), d.vocabSize);
    let h = mm(onehot, this.w('model.embed_tokens.weight')) as tf.Tensor2D;
    const inv = Float32Array.from(ropeInverseFrequencies(d.rope!, D));
    const freqs = tf.outerProduct(tf.range(0, T, 1, 'float32'), tf.tensor1d(inv));
    const emb = tf.concat([freqs, freqs], -1);
    const cos = tf.cos(emb);
    const sin = tf.sin(emb);
    const rope = (x: tf.Tensor4D) => {
      const half = D / 2;
      const rotated = tf.concat(
        [tf.neg(tf.slice(x, [0, 0, 0, half], [-1, -1, -1, half])), tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, half])],
        -1,
      );
      return tf.add(tf.mul(x, cos), tf.mul(rotated, sin));
    };
    const G = d.heads / d.kvHeads;
    // −1e9 above the diagonal, repeated for the G query heads stacked along time: [G·T, T]
    const causal = tf.tile(tf.mul(tf.sub(tf.linalg.bandPart(tf.ones([T, T]), -1, 0), 1), 1e9), [G, 1]);
    for (let l = 0; l < d.layers; l++) {
      const p = `model.layers.${l}`;
      const x = this.rmsNorm(h, `${p}.input_layernorm.weight`) as tf.Tensor2D;
      // Grouped-query attention with every tensor at rank ≤ 4 (tfjs lacks rank-5 gradients): the G
      // query heads sharing a KV head are stacked along time. q: [N, H·D] → [B·KV, G·T, D];
      // k, v: [N, KV·D] → [B·KV, T, D]; scores [B·KV, G·T, T].
      const heads = (t: tf.Tensor2D, n: number) => tf.transpose(tf.reshape(t, [B, T, n, D]), [0, 2, 1, 3]) as tf.Tensor4D;
      const q = tf.reshape(rope(heads(this.linear(`${p}.self_attn.q_proj`, x, loraDropout), H)), [B * KV, G * T, D]);
      const k = tf.reshape(rope(heads(this.linear(`${p}.self_attn.k_proj`, x, loraDropout), KV)), [B * KV, T, D]);
      const v = tf.reshape(heads(this.linear(`${p}.self_attn.v_proj`, x, loraDropout), KV), [B * KV, T, D]);
      const scores = tf.add(tf.div(mm(q, tf.transpose(k, [0, 2, 1])), Math.sqrt(D)), causal);
      const ctx4 = tf.reshape(mm(tf.softmax(scores), v), [B, H, T, D]);
      const ctx = tf.reshape(tf.transpose(ctx4, [0, 2, 1, 3]), [N, H * D]) as tf.Tensor2D;
      h = tf.add(h, this.linear(`${p}.self_attn.o_proj`, ctx, loraDropout));
      const m = this.rmsNorm(h, `${p}.post_attention_layernorm.weight`) as tf.Tensor2D;
      const gate = this.linear(`${p}.mlp.gate_proj`, m, loraDropout);
      const up = this.linear(`${p}.mlp.up_proj`, m, loraDropout);
      h = tf.add(h, this.linear(`${p}.mlp.down_proj`, tf.mul(tf.mul(gate, tf.sigmoid(gate)), up) as tf.Tensor2D, loraDropout));
    }
    const norm = this.rmsNorm(h, 'model.norm.weight') as tf.Tensor2D;
    const logits = d.tieWordEmbeddings ? mm(norm, tf.transpose(this.w('model.embed_tokens.weight'))) : mm(norm, this.w('lm_head.weight'));
    return tf.reshape(logits, [B, T, d.vocabSize]);
  }

  dispose(): void {
    for (const v of this.weights.values()) v.dispose();
    for (const l of this.lora.values()) {
      l.At.dispose();
      l.Bt.dispose();
    }
  }
}
