/**
 * An independent reference forward pass: plain float64 loops over the same HF weights, with no
 * ONNX Runtime and none of the engine's code. Engine logits are checked against it.
 */
import type { LoraModuleWeights as RefLora, TinyModel } from '../../src/testing/index.js';
export type { RefLora };

/** Adapters applied to a row: one adapter's modules, or a weighted mix of several. */
export type RefAdapters = Map<string, RefLora> | Array<{ weight: number; lora: Map<string, RefLora> }>;

type Vec = Float64Array;

export function referenceLogits(model: TinyModel, tokens: number[], adapters: RefAdapters = new Map()): Float64Array[] {
  const mix = adapters instanceof Map ? [{ weight: 1, lora: adapters }] : adapters;
  const c = model.config;
  const w = (n: string) => {
    const t = model.weights.get(n);
    if (!t) throw new Error(`reference: missing ${n}`);
    return t;
  };
  const gpt2 = c.model_type === 'gpt2';
  const H = (gpt2 ? c.n_embd : c.hidden_size) as number;
  const L = (gpt2 ? c.n_layer : c.num_hidden_layers) as number;
  const heads = (gpt2 ? c.n_head : c.num_attention_heads) as number;
  const kvHeads = gpt2 ? heads : ((c.num_key_value_heads as number) ?? heads);
  const D = H / heads;
  const T = tokens.length;

  /**
   * One adapter's layer, as PEFT's LoRA Linear computes it: y = W x + b + s·B·A·x, where b is the
   * trained bias when the adapter carries one. With DoRA (PEFT's DoraLinearLayer) the scaled part is
   * g ⊙ (W x + s·B·A·x) with g = m / ‖W + s·B·A‖, the L2 norm of each output row of the [out, in]
   * weight taken over the input axis; the bias stays outside the scale.
   * W is stored [out, in] (Linear) or [in, out] (Conv1D, fanInFanOut).
   */
  const linear = (name: string, x: Vec, fanInFanOut: boolean): Vec => {
    const W = w(`${name}.weight`);
    const [d0, d1] = W.shape as [number, number];
    const inF = fanInFanOut ? d0 : d1;
    const outF = fanInFanOut ? d1 : d0;
    const wAt = (o: number, i: number) => (fanInFanOut ? W.data[i * outF + o]! : W.data[o * inF + i]!);
    const baseBias = model.weights.get(`${name}.bias`)?.data;
    const adapted = (ad: RefLora | undefined): Vec => {
      const y = new Float64Array(outF);
      for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) y[o]! += wAt(o, i) * x[i]!;
      if (ad) {
        const ax = new Float64Array(ad.r);
        for (let k = 0; k < ad.r; k++) for (let i = 0; i < inF; i++) ax[k]! += ad.A[k * inF + i]! * x[i]!;
        for (let o = 0; o < outF; o++) {
          let s = 0;
          for (let k = 0; k < ad.r; k++) s += ad.B[o * ad.r + k]! * ax[k]!;
          y[o]! += ad.scale * s;
        }
        if (ad.magnitude) {
          for (let o = 0; o < outF; o++) {
            let sq = 0;
            for (let i = 0; i < inF; i++) {
              let ba = 0;
              for (let k = 0; k < ad.r; k++) ba += ad.B[o * ad.r + k]! * ad.A[k * inF + i]!;
              sq += (wAt(o, i) + ad.scale * ba) ** 2;
            }
            y[o]! *= ad.magnitude[o]! / Math.sqrt(sq);
          }
        }
      }
      const bias = ad?.bias ?? baseBias;
      if (bias) for (let o = 0; o < outF; o++) y[o]! += bias[o]!;
      return y;
    };
    const base = adapted(undefined);
    const used = mix.filter((m) => m.lora.has(name));
    // A mix is the output-space sum of each adapter's change: y = base + Σ wᵢ (adaptedᵢ − base).
    if (used.length === 1 && used[0]!.weight === 1) return adapted(used[0]!.lora.get(name));
    const y = Float64Array.from(base);
    for (const { weight, lora } of used) {
      const yi = adapted(lora.get(name));
      for (let o = 0; o < outF; o++) y[o]! += weight * (yi[o]! - base[o]!);
    }
    return y;
  };
  const layerNorm = (x: Vec, p: string, eps: number): Vec => {
    const g = w(`${p}.weight`).data,
      b = w(`${p}.bias`).data;
    let mean = 0;
    for (const v of x) mean += v;
    mean /= x.length;
    let vr = 0;
    for (const v of x) vr += (v - mean) ** 2;
    vr /= x.length;
    return x.map((v, i) => ((v - mean) / Math.sqrt(vr + eps)) * g[i]! + b[i]!);
  };
  const rmsNorm = (x: Vec, n: string, eps: number): Vec => {
    const g = w(n).data;
    let ms = 0;
    for (const v of x) ms += v * v;
    ms /= x.length;
    return x.map((v, i) => (v / Math.sqrt(ms + eps)) * g[i]!);
  };
  const invFreq = (): Float64Array => {
    const theta = (c.rope_theta as number) ?? 10000;
    const inv = new Float64Array(D / 2).map((_, i) => 1 / theta ** ((2 * i) / D));
    const rs = c.rope_scaling as Record<string, number | string> | undefined;
    if (rs && (rs.rope_type ?? rs.type) === 'llama3') {
      const f = rs.factor as number,
        lo = rs.low_freq_factor as number,
        hi = rs.high_freq_factor as number,
        old = rs.original_max_position_embeddings as number;
      return inv.map((v) => {
        const wl = (2 * Math.PI) / v;
        if (wl < old / hi) return v;
        if (wl > old / lo) return v / f;
        const sm = (old / wl - lo) / (hi - lo);
        return (1 - sm) * (v / f) + sm * v;
      });
    }
    return inv;
  };
  const rope = (x: Vec, pos: number, inv: Float64Array): Vec => {
    const out = new Float64Array(D);
    const half = D / 2;
    for (let i = 0; i < D; i++) {
      const f = pos * inv[i % half]!;
      const rot = i < half ? -x[i + half]! : x[i - half]!;
      out[i] = x[i]! * Math.cos(f) + rot * Math.sin(f);
    }
    return out;
  };

  let h: Vec[] = tokens.map((tok, t) => {
    const e = new Float64Array(H);
    const emb = w(gpt2 ? 'transformer.wte.weight' : 'model.embed_tokens.weight').data;
    for (let i = 0; i < H; i++) e[i] = emb[tok * H + i]!;
    if (gpt2) {
      const pe = w('transformer.wpe.weight').data;
      for (let i = 0; i < H; i++) e[i]! += pe[t * H + i]!;
    }
    return e;
  });
  const inv = gpt2 ? null : invFreq();
  // transformers: Mistral windows every layer when sliding_window is set; Qwen2 only with
  // use_sliding_window, on the layers layer_types marks sliding (default: from max_window_layers on).
  const windows = Array.from({ length: L }, (_, l): number | null => {
    const w = (c.sliding_window as number | null | undefined) ?? null;
    if (c.model_type === 'mistral') return w;
    if (c.model_type !== 'qwen2' || c.use_sliding_window !== true || w === null) return null;
    const types = c.layer_types as string[] | undefined;
    const sliding = types ? types[l] === 'sliding_attention' : l >= ((c.max_window_layers as number | undefined) ?? 28);
    return sliding ? w : null;
  });
  for (let l = 0; l < L; l++) {
    const p = gpt2 ? `transformer.h.${l}` : `model.layers.${l}`;
    const qs: Vec[] = [],
      ks: Vec[] = [],
      vs: Vec[] = [];
    for (let t = 0; t < T; t++) {
      if (gpt2) {
        const qkv = linear(`${p}.attn.c_attn`, layerNorm(h[t]!, `${p}.ln_1`, c.layer_norm_epsilon as number), true);
        qs.push(qkv.slice(0, H));
        ks.push(qkv.slice(H, 2 * H));
        vs.push(qkv.slice(2 * H));
      } else {
        const x = rmsNorm(h[t]!, `${p}.input_layernorm.weight`, c.rms_norm_eps as number);
        qs.push(linear(`${p}.self_attn.q_proj`, x, false));
        ks.push(linear(`${p}.self_attn.k_proj`, x, false));
        vs.push(linear(`${p}.self_attn.v_proj`, x, false));
      }
    }
    const headOf = (v: Vec, hIdx: number, t: number) => {
      const s = v.slice(hIdx * D, (hIdx + 1) * D);
      return inv ? rope(s, t, inv) : s;
    };
    const attnOut: Vec[] = [];
    for (let t = 0; t < T; t++) {
      const ctx = new Float64Array(heads * D);
      for (let hd = 0; hd < heads; hd++) {
        const kvh = Math.floor(hd / (heads / kvHeads));
        const q = headOf(qs[t]!, hd, t);
        // Keys outside the layer's sliding window (key position ≤ t − window) get no weight.
        const first = windows[l] === null ? 0 : Math.max(0, t - windows[l]! + 1);
        const scores = new Float64Array(t + 1).fill(-Infinity);
        for (let j = first; j <= t; j++) {
          const k = headOf(ks[j]!, kvh, j);
          let s = 0;
          for (let i = 0; i < D; i++) s += q[i]! * k[i]!;
          scores[j] = s / Math.sqrt(D);
        }
        const mx = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - mx));
        const sum = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= t; j++) for (let i = 0; i < D; i++) ctx[hd * D + i]! += (e[j]! / sum) * vs[j]![kvh * D + i]!;
      }
      attnOut.push(ctx);
    }
    h = h.map((x, t) => {
      const a = linear(gpt2 ? `${p}.attn.c_proj` : `${p}.self_attn.o_proj`, attnOut[t]!, gpt2);
      const h1 = x.map((v, i) => v + a[i]!);
      let m: Vec;
      if (gpt2) {
        const fc = linear(`${p}.mlp.c_fc`, layerNorm(h1, `${p}.ln_2`, c.layer_norm_epsilon as number), true);
        const g = fc.map((v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))));
        m = linear(`${p}.mlp.c_proj`, g, true);
      } else {
        const x2 = rmsNorm(h1, `${p}.post_attention_layernorm.weight`, c.rms_norm_eps as number);
        const gate = linear(`${p}.mlp.gate_proj`, x2, false),
          up = linear(`${p}.mlp.up_proj`, x2, false);
        m = linear(
          `${p}.mlp.down_proj`,
          gate.map((v, i) => (v / (1 + Math.exp(-v))) * up[i]!),
          false,
        );
      }
      return h1.map((v, i) => v + m[i]!);
    });
  }
  const head = w(gpt2 ? 'transformer.wte.weight' : c.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight').data;
  const V = model.vocabSize;
  return h.map((x) => {
    const n = gpt2
      ? layerNorm(x, 'transformer.ln_f', c.layer_norm_epsilon as number)
      : rmsNorm(x, 'model.norm.weight', c.rms_norm_eps as number);
    const out = new Float64Array(V);
    for (let v = 0; v < V; v++) {
      let s = 0;
      for (let i = 0; i < H; i++) s += head[v * H + i]! * n[i]!;
      out[v] = s;
    }
    return out;
  });
}

/** max |a-b| / max(1, max |b|): a relative error that stays meaningful near zero. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let maxDiff = 0,
    maxRef = 1;
  for (let i = 0; i < b.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    maxRef = Math.max(maxRef, Math.abs(b[i]!));
  }
  return maxDiff / maxRef;
}

/** log-softmax of one position's reference logits, in float64. */
export function logSoftmax(logits: Float64Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const logZ = max + Math.log(sum);
  return logits.map((v) => v - logZ);
}
