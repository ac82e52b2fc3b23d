import { configNumber, type Architecture } from '../architecture.js';
import type { LinearModule, ModelDims } from '../dims.js';

/** GPT-2 (`GPT2LMHeadModel`): learned positions, Conv1D weights `[in, out]`, gelu_new, tied head. */
const prefix = (l: number) => `transformer.h.${l}`;

export const gpt2: Architecture = {
  family: 'gpt2',
  hfArchitectures: ['GPT2LMHeadModel'],
  layersPattern: 'h',

  parseDims(c) {
    const hidden = configNumber(c, 'n_embd');
    const heads = configNumber(c, 'n_head');
    const layers = configNumber(c, 'n_layer');
    return {
      vocabSize: configNumber(c, 'vocab_size'),
      hidden,
      layers,
      heads,
      kvHeads: heads,
      headDim: hidden / heads,
      intermediate: configNumber(c, 'n_inner', 4 * hidden),
      maxPositions: configNumber(c, 'n_positions'),
      normEps: configNumber(c, 'layer_norm_epsilon', 1e-5),
      tieWordEmbeddings: true,
      rope: null,
      slidingWindows: Array.from({ length: layers }, () => null),
      bias: { qkv: true, out: true, mlp: true },
    };
  },

  linears(d: ModelDims): LinearModule[] {
    const out: LinearModule[] = [];
    for (let layer = 0; layer < d.layers; layer++) {
      const conv = (path: string, inFeatures: number, outFeatures: number): LinearModule => ({
        name: `${prefix(layer)}.${path}`,
        layer,
        inFeatures,
        outFeatures,
        weight: `${prefix(layer)}.${path}.weight`,
        bias: `${prefix(layer)}.${path}.bias`,
        fanInFanOut: true,
      });
      out.push(
        conv('attn.c_attn', d.hidden, 3 * d.hidden),
        conv('attn.c_proj', d.hidden, d.hidden),
        conv('mlp.c_fc', d.hidden, d.intermediate),
        conv('mlp.c_proj', d.intermediate, d.hidden),
      );
    }
    return out;
  },

  forward(f, d) {
    let h = f.add(f.embed('transformer.wte.weight'), f.positionEmbed('transformer.wpe.weight'));
    for (let l = 0; l < d.layers; l++) {
      const p = prefix(l);
      const [q, k, v] = f.split(f.linear(`${p}.attn.c_attn`, f.layerNorm(h, `${p}.ln_1`, d.normEps)), [d.hidden, d.hidden, d.hidden]);
      h = f.add(h, f.linear(`${p}.attn.c_proj`, f.attention(l, q!, k!, v!, { rope: false })));
      const mlpIn = f.layerNorm(h, `${p}.ln_2`, d.normEps);
      h = f.add(h, f.linear(`${p}.mlp.c_proj`, f.geluTanh(f.linear(`${p}.mlp.c_fc`, mlpIn))));
    }
    return f.layerNorm(f.logitPositions(h), 'transformer.ln_f', d.normEps);
  },

  lmHead: () => 'transformer.wte.weight',
};
