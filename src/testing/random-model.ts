import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeSafetensors, type TensorToWrite } from '../model/index.js';
import { CHATML_SPECIALS, CHATML_TEMPLATE, tokenizerConfigJson, tokenizerJson } from '../tokenizer/index.js';
import { f32ToBf16, f32ToF16, bf16ToF32, f16ToF32 } from '../util/half.js';
import { rng } from '../util/rng.js';

export type Family = 'gpt2' | 'llama' | 'qwen2';

export interface RandomModelOptions {
  family: Family;
  seed?: number;
  hidden?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  intermediate?: number;
  dtype?: 'F32' | 'F16' | 'BF16';
  tie?: boolean;
  ropeScaling?: Record<string, unknown>;
  /** Split the weights over two shards with an index file. */
  sharded?: boolean;
  /** Defaults to 256 byte tokens + 3 ChatML specials, rounded up. */
  vocabSize?: number;
  maxPositions?: number;
  /** Byte-pair merges for the tokenizer; enough of them gives every vocabulary id a token. */
  merges?: Array<[string, string]>;
  /** Extra config.json fields, written over the family's (e.g. Mistral's model_type and sliding_window). */
  config?: Record<string, unknown>;
  /** Scale of the random weights (the tiny test models use larger ones so logits spread). */
  std?: number;
}

export interface TinyModel {
  dir: string;
  config: Record<string, unknown>;
  /** Weights as the model holds them (after any half-precision rounding), float32. */
  weights: Map<string, { shape: number[]; data: Float32Array }>;
  vocabSize: number;
  eosId: number;
}

export const TINY_VOCAB = 264;

/**
 * Writes a real Hugging Face folder with random weights and a byte-level tokenizer: the fixtures
 * of the tests and the models of the benchmark (no model hub is reachable).
 */
export function writeRandomModel(dir: string, o: RandomModelOptions): TinyModel {
  mkdirSync(dir, { recursive: true });
  const r = rng(o.seed ?? 1);
  const H = o.hidden ?? 32;
  const L = o.layers ?? 2;
  const heads = o.heads ?? 4;
  const kvHeads = o.family === 'gpt2' ? heads : (o.kvHeads ?? 2);
  const D = H / heads;
  const I = o.intermediate ?? 2 * H;
  const merges = o.merges ?? [];
  const V = o.vocabSize ?? TINY_VOCAB;
  const P = o.maxPositions ?? 256;
  const eosId = 256 + merges.length + CHATML_SPECIALS.indexOf('<|im_end|>');
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  const scale = o.std === undefined ? 1 : o.std / 0.3;
  const add = (name: string, shape: number[], std: number, mean = 0) => {
    const data = r.tensor(
      shape.reduce((a, b) => a * b, 1),
      std * scale,
    );
    if (mean) for (let i = 0; i < data.length; i++) data[i]! += mean;
    weights.set(name, { shape, data });
  };
  let config: Record<string, unknown>;
  if (o.family === 'gpt2') {
    config = {
      architectures: ['GPT2LMHeadModel'],
      model_type: 'gpt2',
      n_embd: H,
      n_layer: L,
      n_head: heads,
      n_positions: P,
      n_inner: I,
      vocab_size: V,
      layer_norm_epsilon: 1e-5,
      activation_function: 'gelu_new',
      bos_token_id: eosId,
      eos_token_id: eosId,
    };
    add('transformer.wte.weight', [V, H], 0.5);
    add('transformer.wpe.weight', [P, H], 0.1);
    for (let l = 0; l < L; l++) {
      const p = `transformer.h.${l}`;
      add(`${p}.ln_1.weight`, [H], 0.1, 1);
      add(`${p}.ln_1.bias`, [H], 0.1);
      add(`${p}.attn.c_attn.weight`, [H, 3 * H], 0.3);
      add(`${p}.attn.c_attn.bias`, [3 * H], 0.1);
      add(`${p}.attn.c_proj.weight`, [H, H], 0.3);
      add(`${p}.attn.c_proj.bias`, [H], 0.1);
      add(`${p}.ln_2.weight`, [H], 0.1, 1);
      add(`${p}.ln_2.bias`, [H], 0.1);
      add(`${p}.mlp.c_fc.weight`, [H, I], 0.3);
      add(`${p}.mlp.c_fc.bias`, [I], 0.1);
      add(`${p}.mlp.c_proj.weight`, [I, H], 0.3);
      add(`${p}.mlp.c_proj.bias`, [H], 0.1);
    }
    add('transformer.ln_f.weight', [H], 0.1, 1);
    add('transformer.ln_f.bias', [H], 0.1);
  } else {
    const qwen = o.family === 'qwen2';
    const tie = o.tie ?? qwen;
    config = {
      architectures: [qwen ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'],
      model_type: qwen ? 'qwen2' : 'llama',
      hidden_size: H,
      intermediate_size: I,
      num_hidden_layers: L,
      num_attention_heads: heads,
      num_key_value_heads: kvHeads,
      max_position_embeddings: P,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      vocab_size: V,
      tie_word_embeddings: tie,
      hidden_act: 'silu',
      bos_token_id: eosId,
      eos_token_id: eosId,
      ...(o.ropeScaling ? { rope_scaling: o.ropeScaling } : {}),
    };
    add('model.embed_tokens.weight', [V, H], 0.5);
    for (let l = 0; l < L; l++) {
      const p = `model.layers.${l}`;
      add(`${p}.input_layernorm.weight`, [H], 0.1, 1);
      add(`${p}.self_attn.q_proj.weight`, [heads * D, H], 0.3);
      add(`${p}.self_attn.k_proj.weight`, [kvHeads * D, H], 0.3);
      add(`${p}.self_attn.v_proj.weight`, [kvHeads * D, H], 0.3);
      if (qwen) {
        add(`${p}.self_attn.q_proj.bias`, [heads * D], 0.2);
        add(`${p}.self_attn.k_proj.bias`, [kvHeads * D], 0.2);
        add(`${p}.self_attn.v_proj.bias`, [kvHeads * D], 0.2);
      }
      add(`${p}.self_attn.o_proj.weight`, [H, heads * D], 0.3);
      add(`${p}.post_attention_layernorm.weight`, [H], 0.1, 1);
      add(`${p}.mlp.gate_proj.weight`, [I, H], 0.3);
      add(`${p}.mlp.up_proj.weight`, [I, H], 0.3);
      add(`${p}.mlp.down_proj.weight`, [H, I], 0.3);
    }
    add('model.norm.weight', [H], 0.1, 1);
    if (!tie) add('lm_head.weight', [V, H], 0.5);
  }
  const dtype = o.dtype ?? 'F32';
  const toWrite: Record<string, TensorToWrite> = {};
  for (const [name, w] of weights) {
    if (dtype === 'F16') {
      const h = f32ToF16(w.data);
      toWrite[name] = { dtype, shape: w.shape, data: h };
      w.data = f16ToF32(h);
    } else if (dtype === 'BF16') {
      const h = f32ToBf16(w.data);
      toWrite[name] = { dtype, shape: w.shape, data: h };
      w.data = bf16ToF32(h);
    } else toWrite[name] = { dtype, shape: w.shape, data: w.data };
  }
  if (o.sharded) {
    const names = Object.keys(toWrite).sort();
    const half = Math.ceil(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    shards.forEach((shard, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeFileSync(join(dir, file), encodeSafetensors(Object.fromEntries(shard.map((n) => [n, toWrite[n]!]))));
      for (const n of shard) weightMap[n] = file;
    });
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  } else {
    writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(toWrite, { format: 'pt' }));
  }
  config = { ...config, ...o.config };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: eosId, bos_token_id: eosId }));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson({ merges, specials: CHATML_SPECIALS })));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigJson(CHATML_SPECIALS, CHATML_TEMPLATE, '<|im_end|>')));
  return { dir, config, weights, vocabSize: V, eosId };
}
