import { UnsupportedArchitectureError } from '../errors.js';
import type { HfModel } from '../model/index.js';

/**
 * How llama.cpp names our architectures and their tensors (gguf-py's constants.py and
 * tensor_mapping.py, checked against llama.cpp's loaders for these architectures).
 */
export type GgufArchitecture = 'qwen2' | 'llama' | 'gpt2';

export function ggufArchitecture(model: HfModel): GgufArchitecture {
  const type = String(model.config.model_type);
  if (type === 'qwen2') return 'qwen2';
  if (type === 'llama' || type === 'mistral') return 'llama';
  if (type === 'gpt2') return 'gpt2';
  throw new UnsupportedArchitectureError(`model_type "${type}" has no GGUF mapping here (qwen2, llama, mistral and gpt2 do)`);
}

const LLAMA_LAYER: Record<string, string> = {
  input_layernorm: 'attn_norm',
  'self_attn.q_proj': 'attn_q',
  'self_attn.k_proj': 'attn_k',
  'self_attn.v_proj': 'attn_v',
  'self_attn.o_proj': 'attn_output',
  post_attention_layernorm: 'ffn_norm',
  'mlp.gate_proj': 'ffn_gate',
  'mlp.up_proj': 'ffn_up',
  'mlp.down_proj': 'ffn_down',
};
const LLAMA_GLOBAL: Record<string, string> = {
  'model.embed_tokens.weight': 'token_embd.weight',
  'model.norm.weight': 'output_norm.weight',
  'lm_head.weight': 'output.weight',
};

const GPT2_LAYER: Record<string, string> = {
  ln_1: 'attn_norm',
  'attn.c_attn': 'attn_qkv',
  'attn.c_proj': 'attn_output',
  ln_2: 'ffn_norm',
  'mlp.c_fc': 'ffn_up',
  'mlp.c_proj': 'ffn_down',
};
const GPT2_GLOBAL: Record<string, string> = {
  'transformer.wte.weight': 'token_embd.weight',
  'transformer.wpe.weight': 'position_embd.weight',
  'transformer.ln_f.weight': 'output_norm.weight',
  'transformer.ln_f.bias': 'output_norm.bias',
};
/** Stored in some GPT-2 checkpoints but not weights llama.cpp reads: the causal-mask buffers and the tied head. */
const GPT2_SKIPPED = /^(?:transformer\.h\.\d+\.attn\.(?:masked_)?bias|lm_head\.weight)$/;

/** The GGUF name of a Hugging Face weight, or null for a tensor llama.cpp does not take. */
export function ggufTensorName(arch: GgufArchitecture, hfName: string): string | null {
  const gpt2 = arch === 'gpt2';
  const global = (gpt2 ? GPT2_GLOBAL : LLAMA_GLOBAL)[hfName];
  if (global) return global;
  if (gpt2 && GPT2_SKIPPED.test(hfName)) return null;
  const m = (gpt2 ? /^transformer\.h\.(\d+)\.(.+)\.(weight|bias)$/ : /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/).exec(hfName);
  const part = m && (gpt2 ? GPT2_LAYER : LLAMA_LAYER)[m[2]!];
  if (!m || !part) throw new UnsupportedArchitectureError(`weight "${hfName}" has no GGUF name for the ${arch} architecture`);
  return `blk.${m[1]}.${part}.${m[3]}`;
}

/**
 * llama.cpp's `llama` architecture applies rotary embeddings to interleaved pairs, Hugging Face
 * to the two halves of each head (NEOX style); its converter therefore reorders the rows of
 * q_proj and k_proj (and their LoRA B) head by head: new row h·D + 2i + j = old row h·D + j·D/2 + i.
 * `qwen2` uses NEOX rope itself, so nothing is permuted there.
 */
export function permuteRopeRows(data: Float32Array, heads: number, cols: number): Float32Array {
  const rows = data.length / cols;
  const D = rows / heads;
  const out = new Float32Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < D / 2; i++) {
      for (let j = 0; j < 2; j++) {
        const src = (h * D + j * (D / 2) + i) * cols;
        out.set(data.subarray(src, src + cols), (h * D + 2 * i + j) * cols);
      }
    }
  }
  return out;
}

/** Heads to permute by, for a q/k projection of the `llama` architecture; null otherwise. */
export function ropePermutationHeads(arch: GgufArchitecture, model: HfModel, moduleName: string): number | null {
  if (arch !== 'llama') return null;
  if (moduleName.endsWith('.self_attn.q_proj')) return model.dims.heads;
  if (moduleName.endsWith('.self_attn.k_proj')) return model.dims.kvHeads;
  return null;
}
