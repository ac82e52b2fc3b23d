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
    // Each residual add is fused with the norm that reads it, except the last (the final norm runs
    // on the logit positions only).
    let [h, x] = f.addLayerNorm(
      f.embed('transformer.wte.weight'),
      f.positionEmbed('transformer.wpe.weight'),
      `${prefix(0)}.ln_1`,
      d.normEps,
    );
    for (let l = 0; l < d.layers; l++) {
      const p = prefix(l);
      const [q, k, v] = f.split(f.linear(`${p}.attn.c_attn`, x), [d.hidden, d.hidden, d.hidden]);
      const [afterAttn, mlpIn] = f.addLayerNorm(
        h,
        f.linear(`${p}.attn.c_proj`, f.attention(l, q!, k!, v!, { rope: false })),
        `${p}.ln_2`,
        d.normEps,
      );
      const mlp = f.linear(`${p}.mlp.c_proj`, f.geluTanh(f.linear(`${p}.mlp.c_fc`, mlpIn)));
      if (l + 1 < d.layers) [h, x] = f.addLayerNorm(afterAttn, mlp, `${prefix(l + 1)}.ln_1`, d.normEps);
      else h = f.add(afterAttn, mlp);
    }
    return f.layerNorm(f.logitPositions(h), 'transformer.ln_f', d.normEps);
  },

  lmHead: () => 'transformer.wte.weight',
};
