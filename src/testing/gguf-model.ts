import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { ModelConfigError, TokenizerError, UnsupportedArchitectureError } from '../errors.js';
import { loadHfModel, type HfModel } from '../model/index.js';
import { gguf, writeGguf, type GgmlType, type GgufTensor, type GgufValue } from './gguf-file.js';
import { encodeAs } from './ggml-quants.js';
import { ggufArchitecture, ggufTensorName, permuteRopeRows, ropePermutationHeads, type GgufArchitecture } from './gguf-names.js';

/** Weight types a model can be written in; norms and biases always stay F32 (as llama.cpp's converter keeps them). */
export type GgufWeightType = 'F32' | 'F16' | 'Q8_0' | 'Q4_0';

/** general.file_type (llama.h's llama_ftype). */
const FILE_TYPE: Record<GgufWeightType, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7 };

/** llama_token_type (llama.h). */
const TOKEN_TYPE = { normal: 1, control: 3, userDefined: 4, unused: 5 } as const;

export interface WrittenGgufModel {
  path: string;
  architecture: GgufArchitecture;
  type: GgufWeightType;
  /** GGUF tensor name → the type it was written in. */
  tensorTypes: Map<string, GgmlType>;
}

function hparams(arch: GgufArchitecture, model: HfModel): Array<[string, GgufValue]> {
  const d = model.dims;
  if (d.heads * d.headDim !== d.hidden)
    throw new UnsupportedArchitectureError(`head_dim ${d.headDim} × ${d.heads} heads ≠ hidden size ${d.hidden}: not written as GGUF here`);
  const common: Array<[string, GgufValue]> = [
    [`${arch}.context_length`, gguf.u32(d.maxPositions)],
    [`${arch}.embedding_length`, gguf.u32(d.hidden)],
    [`${arch}.feed_forward_length`, gguf.u32(d.intermediate)],
    [`${arch}.block_count`, gguf.u32(d.layers)],
    [`${arch}.attention.head_count`, gguf.u32(d.heads)],
  ];
  if (arch === 'gpt2') return [...common, [`${arch}.attention.layer_norm_epsilon`, gguf.f32(d.normEps)]];
  if (d.rope?.type !== 'default')
    throw new UnsupportedArchitectureError(`rope scaling "${d.rope?.type}" is not written as GGUF here (plain RoPE is)`);
  return [
    ...common,
    [`${arch}.attention.head_count_kv`, gguf.u32(d.kvHeads)],
    [`${arch}.rope.freq_base`, gguf.f32(d.rope.theta)],
    [`${arch}.rope.dimension_count`, gguf.u32(d.headDim)],
    [`${arch}.attention.layer_norm_rms_epsilon`, gguf.f32(d.normEps)],
  ];
}

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number>; merges?: Array<string | [string, string]> };
  added_tokens?: Array<{ id: number; content: string; special?: boolean }>;
  pre_tokenizer?: { type?: string } | null;
}

/**
 * The byte-level BPE tokenizer as llama.cpp's "gpt2" tokenizer model: every id up to the
 * embedding's row count gets a token (ids the tokenizer lacks become unused `[PADn]` tokens, as
 * convert_hf_to_gguf.py writes them), special added tokens are control tokens.
 */
function tokenizerMetadata(arch: GgufArchitecture, model: HfModel): Array<[string, GgufValue]> {
  const path = join(model.dir, 'tokenizer.json');
  let json: TokenizerJson;
  try {
    json = JSON.parse(readFileSync(path, 'utf8')) as TokenizerJson;
  } catch (cause) {
    throw new TokenizerError(`${path} could not be read as JSON`, { cause });
  }
  if (json.model?.type !== 'BPE' || !json.model.vocab)
    throw new TokenizerError(`${path}: only byte-level BPE tokenizers are written as GGUF here`);
  const V = model.dims.vocabSize;
  const tokens = new Array<string | undefined>(V);
  const types = new Array<number>(V).fill(TOKEN_TYPE.unused);
  const place = (id: number, text: string, type: number) => {
    if (!Number.isInteger(id) || id < 0 || id >= V)
      throw new ModelConfigError(`${path}: token id ${id} ("${text}") is outside the model's vocabulary of ${V}`);
    tokens[id] = text;
    types[id] = type;
  };
  for (const [text, id] of Object.entries(json.model.vocab)) place(id, text, TOKEN_TYPE.normal);
  for (const t of json.added_tokens ?? []) place(t.id, t.content, t.special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined);
  const merges = (json.model.merges ?? []).map((m) => (typeof m === 'string' ? m : `${m[0]} ${m[1]}`));
  const pre = json.pre_tokenizer?.type === 'ByteLevel' ? 'gpt-2' : arch === 'qwen2' ? 'qwen2' : 'default';
  const out: Array<[string, GgufValue]> = [
    ['tokenizer.ggml.model', gguf.str('gpt2')],
    ['tokenizer.ggml.pre', gguf.str(pre)],
    ['tokenizer.ggml.tokens', gguf.strings(Array.from(tokens, (t, i) => t ?? `[PAD${i}]`))],
    ['tokenizer.ggml.token_type', gguf.i32s(types)],
    ['tokenizer.ggml.merges', gguf.strings(merges)],
    ['tokenizer.ggml.add_bos_token', gguf.bool(false)],
  ];
  const { eosTokenIds, bosTokenId, padTokenId } = model.generation;
  if (eosTokenIds[0] !== undefined) out.push(['tokenizer.ggml.eos_token_id', gguf.u32(eosTokenIds[0])]);
  if (bosTokenId !== null) out.push(['tokenizer.ggml.bos_token_id', gguf.u32(bosTokenId)]);
  if (padTokenId !== null) out.push(['tokenizer.ggml.padding_token_id', gguf.u32(padTokenId)]);
  const configPath = join(model.dir, 'tokenizer_config.json');
  const template = existsSync(configPath)
    ? (JSON.parse(readFileSync(configPath, 'utf8')) as { chat_template?: unknown }).chat_template
    : undefined;
  if (typeof template === 'string') out.push(['tokenizer.chat_template', gguf.str(template)]);
  return out;
}

/**
 * Linear layers take the requested type; the embeddings and the head take it too except with
 * Q4_0, where they get Q8_0 (llama.cpp's own Q4_0 recipe keeps the head at Q6_K, a type not
 * written here). A row length that is not a multiple of 32 falls back to F16, as
 * convert_hf_to_gguf.py does.
 */
function tensorType(shape: number[], isLinear: boolean, type: GgufWeightType): GgmlType {
  if (shape.length === 1 || type === 'F32') return 'F32';
  const chosen: GgmlType = type === 'Q4_0' && !isLinear ? 'Q8_0' : type;
  return chosen !== 'F16' && shape[shape.length - 1]! % 32 !== 0 ? 'F16' : chosen;
}

function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = src[i * cols + j]!;
  return out;
}

/**
 * Writes a Hugging Face model folder (Qwen2, Llama/Mistral or GPT-2) as one GGUF file that
 * llama.cpp loads: architecture metadata, the tokenizer, and every weight under its GGUF name.
 */
export function writeGgufModel(modelDir: string, path: string, type: GgufWeightType = 'F32'): WrittenGgufModel {
  const model = loadHfModel(modelDir);
  try {
    const arch = ggufArchitecture(model);
    const metadata: Array<[string, GgufValue]> = [
      ['general.architecture', gguf.str(arch)],
      ['general.name', gguf.str(model.id)],
      ['general.file_type', gguf.u32(FILE_TYPE[type])],
      ...hparams(arch, model),
      ...tokenizerMetadata(arch, model),
    ];
    const linears = new Map(model.linears.map((m) => [m.weight, m]));
    const biases = new Map(model.linears.filter((m) => m.bias).map((m) => [m.bias!, m]));
    const tensors: GgufTensor[] = [];
    const tensorTypes = new Map<string, GgmlType>();
    for (const hfName of model.weights.names()) {
      const name = ggufTensorName(arch, hfName);
      if (name === null) continue;
      const linear = linears.get(hfName);
      const ref = model.weights.ref(hfName);
      // Conv1D weights are stored [in, out]; GGUF wants torch Linear's [out, in] rows.
      const shape = linear?.fanInFanOut ? [ref.shape[1]!, ref.shape[0]!] : ref.shape;
      const ggmlType = tensorType(shape, linear !== undefined, type);
      const heads = ropePermutationHeads(arch, model, (linear ?? biases.get(hfName))?.name ?? '');
      tensorTypes.set(name, ggmlType);
      tensors.push({
        name,
        shape,
        type: ggmlType,
        data: () => {
          let x = model.weights.readF32(hfName);
          if (linear?.fanInFanOut) x = transpose(x, ref.shape[0]!, ref.shape[1]!);
          if (heads !== null) x = permuteRopeRows(x, heads, shape.length === 2 ? shape[1]! : 1);
          return encodeAs(x, ggmlType);
        },
      });
    }
    writeGguf(path, metadata, tensors);
    return { path, architecture: arch, type, tensorTypes };
  } finally {
    model.weights.close();
  }
}
