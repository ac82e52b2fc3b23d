import { configNumber, type Architecture } from '../architecture.js';
import type { LinearModule, ModelDims, RopeConfig } from '../dims.js';
import { ModelConfigError, UnsupportedArchitectureError } from '../../errors.js';

/**
 * The Llama family: Llama 2/3, Mistral, Qwen2/2.5, SmolLM, TinyLlama. RMSNorm, RoPE (with
 * Llama-3 or linear scaling), grouped-query attention, SiLU-gated MLP; Qwen2 adds q/k/v biases.
 */
const prefix = (l: number) => `model.layers.${l}`;

function parseRope(c: Record<string, unknown>): RopeConfig {
  // transformers 5 nests these under rope_parameters; 4.x keeps rope_theta and rope_scaling flat.
  const params = (c.rope_parameters ?? c.rope_scaling ?? {}) as Record<string, unknown>;
  const theta = typeof params.rope_theta === 'number' ? params.rope_theta : configNumber(c, 'rope_theta', 10000);
  const type = String(params.rope_type ?? params.type ?? 'default');
  if (type !== 'default' && type !== 'linear' && type !== 'llama3') {
    throw new UnsupportedArchitectureError(`rope scaling type "${type}" is not supported (default, linear and llama3 are)`);
  }
  return {
    theta,
    type,
    factor: configNumber(params, 'factor', 1),
    lowFreqFactor: configNumber(params, 'low_freq_factor', 1),
    highFreqFactor: configNumber(params, 'high_freq_factor', 4),
    originalMaxPositions: configNumber(params, 'original_max_position_embeddings', configNumber(c, 'max_position_embeddings', 2048)),
  };
}

/**
 * Which layers attend through a sliding window, as transformers decides it. Mistral: every layer
 * when `sliding_window` is set. Qwen2: `sliding_window` counts only with `use_sliding_window`, and
 * then applies to the layers `layer_types` marks "sliding_attention", which by default are the
 * layers from `max_window_layers` on. Llama has no window.
 */
function slidingWindows(c: Record<string, unknown>, layers: number): Array<number | null> {
  const full = Array.from({ length: layers }, (): number | null => null);
  const window = c.sliding_window === null || c.sliding_window === undefined ? null : configNumber(c, 'sliding_window');
  if (c.model_type === 'mistral') return full.map(() => window);
  if (c.model_type !== 'qwen2') return full;
  const qwenWindow = c.use_sliding_window === true ? window : null;
  const types = c.layer_types;
  if (types === undefined || types === null) {
    const from = configNumber(c, 'max_window_layers', 28);
    return full.map((_, i) => (qwenWindow !== null && i >= from ? qwenWindow : null));
  }
  if (!Array.isArray(types) || types.length !== layers || !types.every((t) => t === 'sliding_attention' || t === 'full_attention')) {
    throw new ModelConfigError(
      `config.json: layer_types must list "sliding_attention" or "full_attention" for each of the ${layers} layers`,
    );
  }
  if (qwenWindow === null && types.includes('sliding_attention')) {
    throw new ModelConfigError(
      'config.json: layer_types marks sliding_attention layers, but no window is set (use_sliding_window with sliding_window)',
    );
  }
  return types.map((t) => (t === 'sliding_attention' ? qwenWindow : null));
}

function hasQkvBias(c: Record<string, unknown>): boolean {
  const arch = (c.architectures as string[] | undefined)?.[0] ?? '';
  return arch.startsWith('Qwen2') || c.attention_bias === true;
}

export const llama: Architecture = {
  family: 'llama',
  hfArchitectures: ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM'],
  layersPattern: 'layers',

  parseDims(c) {
    const hidden = configNumber(c, 'hidden_size');
    const heads = configNumber(c, 'num_attention_heads');
    const act = c.hidden_act ?? 'silu';
    if (act !== 'silu') throw new UnsupportedArchitectureError(`hidden_act "${String(act)}" is not supported (silu is)`);
    const layers = configNumber(c, 'num_hidden_layers');
    return {
      vocabSize: configNumber(c, 'vocab_size'),
      hidden,
      layers,
      heads,
      kvHeads: configNumber(c, 'num_key_value_heads', heads),
      headDim: configNumber(c, 'head_dim', hidden / heads),
      intermediate: configNumber(c, 'intermediate_size'),
      maxPositions: configNumber(c, 'max_position_embeddings', 2048),
      normEps: configNumber(c, 'rms_norm_eps', 1e-6),
      tieWordEmbeddings: c.tie_word_embeddings === true,
      rope: parseRope(c),
      slidingWindows: slidingWindows(c, layers),
      bias: { qkv: hasQkvBias(c), out: c.attention_bias === true, mlp: c.mlp_bias === true },
    };
  },

  linears(d: ModelDims): LinearModule[] {
    const q = d.heads * d.headDim;
    const kv = d.kvHeads * d.headDim;
    const out: LinearModule[] = [];
    for (let layer = 0; layer < d.layers; layer++) {
      const linear = (path: string, inFeatures: number, outFeatures: number, bias: boolean): LinearModule => ({
        name: `${prefix(layer)}.${path}`,
        layer,
        inFeatures,
        outFeatures,
        weight: `${prefix(layer)}.${path}.weight`,
        bias: bias ? `${prefix(layer)}.${path}.bias` : null,
        fanInFanOut: false,
      });
      out.push(
        linear('self_attn.q_proj', d.hidden, q, d.bias.qkv),
        linear('self_attn.k_proj', d.hidden, kv, d.bias.qkv),
        linear('self_attn.v_proj', d.hidden, kv, d.bias.qkv),
        linear('self_attn.o_proj', q, d.hidden, d.bias.out),
        linear('mlp.gate_proj', d.hidden, d.intermediate, d.bias.mlp),
        linear('mlp.up_proj', d.hidden, d.intermediate, d.bias.mlp),
        linear('mlp.down_proj', d.intermediate, d.hidden, d.bias.mlp),
      );
    }
    return out;
  },

  forward(f, d) {
    // Each residual add is fused with the norm that reads it, except the last (the final norm runs
    // on the logit positions only).
    let h = f.embed('model.embed_tokens.weight');
    let x = f.rmsNorm(h, `${prefix(0)}.input_layernorm.weight`, d.normEps);
    for (let l = 0; l < d.layers; l++) {
      const p = prefix(l);
      const attn = f.attention(
        l,
        f.linear(`${p}.self_attn.q_proj`, x),
        f.linear(`${p}.self_attn.k_proj`, x),
        f.linear(`${p}.self_attn.v_proj`, x),
        { rope: true },
      );
      const [afterAttn, m] = f.addRmsNorm(h, f.linear(`${p}.self_attn.o_proj`, attn), `${p}.post_attention_layernorm.weight`, d.normEps);
      const mlp = f.linear(`${p}.mlp.down_proj`, f.mul(f.silu(f.linear(`${p}.mlp.gate_proj`, m)), f.linear(`${p}.mlp.up_proj`, m)));
      if (l + 1 < d.layers) [h, x] = f.addRmsNorm(afterAttn, mlp, `${prefix(l + 1)}.input_layernorm.weight`, d.normEps);
      else h = f.add(afterAttn, mlp);
    }
    return f.rmsNorm(f.logitPositions(h), 'model.norm.weight', d.normEps);
  },

  lmHead: (d) => (d.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'),
};
