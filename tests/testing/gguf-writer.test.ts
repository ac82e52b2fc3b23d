import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { readGgufFileInfo, type GgufFileInfo } from 'node-llama-cpp';
import { loadHfModel } from '../../src/model/index.js';
import { f16ToF32, f32ToF16 } from '../../src/util/half.js';
import {
  permuteRopeRows,
  quantizeQ4_0,
  quantizeQ8_0,
  writeGgufLora,
  writeGgufModel,
  writeRandomAdapter,
  writeRandomModel,
  type GgufWeightType,
  type TinyModel,
} from '../../src/testing/index.js';
import { llamaGreedyTokens, peerAgreement } from '../../src/bench/index.js';
import { tempDir } from '../helpers/adapters.js';

/** ggml's type ids, as the parser reports them. */
const GGML = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 } as const;

function readBytes(path: string, offset: number, length: number): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const out = new Uint8Array(length);
    readSync(fd, out, 0, length, offset);
    return out;
  } finally {
    closeSync(fd);
  }
}

/** Dequantization as ggml defines the blocks: y = d·q (Q8_0), y = d·(nibble − 8) with element j low, j + 16 high (Q4_0). */
function dequantize(bytes: Uint8Array, type: 'Q8_0' | 'Q4_0'): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const size = type === 'Q8_0' ? 34 : 18;
  const out = new Float32Array((bytes.length / size) * 32);
  for (let b = 0; b < bytes.length / size; b++) {
    const d = f16ToF32(new Uint16Array([view.getUint16(b * size, true)]))[0]!;
    for (let j = 0; j < 32; j++) {
      if (type === 'Q8_0') out[b * 32 + j] = d * view.getInt8(b * size + 2 + j);
      else out[b * 32 + j] = d * (((bytes[b * size + 2 + (j % 16)]! >> (j < 16 ? 0 : 4)) & 15) - 8);
    }
  }
  return out;
}

describe('ggml block quantizers', () => {
  const ramp = Float32Array.from({ length: 32 }, (_, j) => j - 16);
  it('Q8_0: scale amax/127, int8 values round(x/d)', () => {
    const q = quantizeQ8_0(ramp);
    assert.equal(q.length, 34);
    assert.equal(new DataView(q.buffer).getInt8(2), -127);
    const d = 16 / 127;
    dequantize(q, 'Q8_0').forEach((y, j) => assert.ok(Math.abs(y - ramp[j]!) <= d / 2 + 1e-3, `element ${j}: ${y}`));
  });
  it('Q4_0: scale max/-8, nibbles low half first', () => {
    const q = quantizeQ4_0(ramp);
    assert.equal(q.length, 18);
    // d = -16 / -8 = 2; element 0 → nibble 0 (low), element 16 → trunc(0 + 8.5) = 8 (high).
    assert.equal(q[2], 0 | (8 << 4));
    dequantize(q, 'Q4_0').forEach((y, j) => assert.ok(Math.abs(y - ramp[j]!) <= 2, `element ${j}: ${y}`));
  });
});

describe('llama-architecture rope permutation', () => {
  it('interleaves the two halves of each head, rows moving whole', () => {
    // 2 heads of 4 rows, 2 columns: row r holds [r, r].
    const rows = Float32Array.from({ length: 16 }, (_, i) => Math.floor(i / 2));
    const out = permuteRopeRows(rows, 2, 2);
    assert.deepEqual(
      Array.from({ length: 8 }, (_, r) => out[r * 2]),
      [0, 2, 1, 3, 4, 6, 5, 7],
    );
  });
});

describe('GGUF writer', () => {
  let tiny: TinyModel;
  let dir: string;
  const files = new Map<GgufWeightType, { path: string; info: GgufFileInfo }>();
  before(async () => {
    dir = tempDir();
    tiny = writeRandomModel(join(dir, 'qwen2'), { family: 'qwen2', seed: 3 });
    for (const type of ['F32', 'F16', 'Q8_0', 'Q4_0'] as const) {
      const path = join(dir, `model-${type}.gguf`);
      writeGgufModel(tiny.dir, path, type);
      files.set(type, { path, info: await readGgufFileInfo(path, { logWarnings: false }) });
    }
  });

  it('writes qwen2 metadata and the tokenizer llama.cpp reads', () => {
    const { info } = files.get('F32')!;
    const m = info.metadata as unknown as Record<string, Record<string, unknown>> & { tokenizer: { ggml: Record<string, unknown> } };
    assert.equal(info.version, 3);
    assert.equal(m.general!.architecture, 'qwen2');
    assert.equal(m.general!.file_type, 0);
    const q = m.qwen2 as Record<string, unknown> & { attention: Record<string, number>; rope: Record<string, number> };
    assert.equal(q.block_count, 2);
    assert.equal(q.embedding_length, 32);
    assert.equal(q.feed_forward_length, 64);
    assert.equal(q.context_length, 256);
    assert.equal(q.attention.head_count, 4);
    assert.equal(q.attention.head_count_kv, 2);
    assert.ok(Math.abs(q.attention.layer_norm_rms_epsilon! - 1e-6) < 1e-12);
    assert.equal(q.rope.freq_base, 10000);
    const tok = m.tokenizer.ggml;
    assert.equal(tok.model, 'gpt2');
    const tokens = tok.tokens as string[];
    assert.equal(tokens.length, tiny.vocabSize);
    assert.equal(tokens[65], 'A');
    assert.equal(tokens[256], '<|endoftext|>');
    assert.equal(tokens[263], '[PAD263]');
    const types = tok.token_type as number[];
    assert.deepEqual([types[65], types[258], types[263]], [1, 3, 5]);
    assert.deepEqual(tok.merges, []);
    assert.equal(tok.eos_token_id, tiny.eosId);
  });

  it('lists every weight under its GGUF name, dims innermost first, F32 bytes unchanged', () => {
    const { path, info } = files.get('F32')!;
    const tensors = new Map(info.tensorInfo!.map((t) => [t.name, t]));
    assert.equal(tensors.size, tiny.weights.size);
    assert.ok(!tensors.has('output.weight'), 'tied head: llama.cpp reuses token_embd');
    const pairs: Array<[string, string]> = [
      ['token_embd.weight', 'model.embed_tokens.weight'],
      ['output_norm.weight', 'model.norm.weight'],
      ['blk.1.attn_q.weight', 'model.layers.1.self_attn.q_proj.weight'],
      ['blk.1.attn_k.bias', 'model.layers.1.self_attn.k_proj.bias'],
      ['blk.0.attn_output.weight', 'model.layers.0.self_attn.o_proj.weight'],
      ['blk.0.ffn_down.weight', 'model.layers.0.mlp.down_proj.weight'],
      ['blk.0.ffn_norm.weight', 'model.layers.0.post_attention_layernorm.weight'],
    ];
    for (const [name, hf] of pairs) {
      const t = tensors.get(name)!;
      const w = tiny.weights.get(hf)!;
      assert.deepEqual(t.dimensions.map(Number), [...w.shape].reverse(), name);
      assert.equal(t.ggmlType, GGML.F32);
      assert.equal(Number(t.offset) % 32, 0);
      const bytes = readBytes(path, Number(t.fileOffset), w.data.byteLength);
      assert.deepEqual(new Float32Array(bytes.buffer), w.data, name);
    }
  });

  it('writes F16, Q8_0 and Q4_0 weights that decode to the float weights', () => {
    const hf = 'model.layers.0.mlp.up_proj.weight';
    const w = tiny.weights.get(hf)!;
    const maxAbs = w.data.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
    for (const [type, tol] of [
      ['F16', 1e-3],
      ['Q8_0', maxAbs / 127],
      ['Q4_0', maxAbs / 4],
    ] as const) {
      const { path, info } = files.get(type)!;
      const t = info.tensorInfo!.find((x) => x.name === 'blk.0.ffn_up.weight')!;
      assert.equal(t.ggmlType, GGML[type]);
      const n = w.data.length;
      const bytes = readBytes(path, Number(t.fileOffset), type === 'F16' ? n * 2 : (n / 32) * (type === 'Q8_0' ? 34 : 18));
      const y = type === 'F16' ? f16ToF32(new Uint16Array(bytes.buffer)) : dequantize(bytes, type);
      y.forEach((v, i) => assert.ok(Math.abs(v - w.data[i]!) <= tol, `${type} element ${i}: ${v} vs ${w.data[i]}`));
      const norm = info.tensorInfo!.find((x) => x.name === 'blk.0.attn_norm.weight')!;
      assert.equal(norm.ggmlType, GGML.F32, 'norms stay F32');
    }
    const embd = files.get('Q4_0')!.info.tensorInfo!.find((x) => x.name === 'token_embd.weight')!;
    assert.equal(embd.ggmlType, GGML.Q8_0, 'with Q4_0 the (tied) head is Q8_0');
    assert.deepEqual(Array.from(f32ToF16(new Float32Array([1]))), [0x3c00]);
  });

  it('writes a PEFT adapter as a LoRA GGUF: lora_a [in, r], lora_b [r, out], alpha', async () => {
    const model = loadHfModel(tiny.dir);
    const adir = join(dir, 'adapter');
    const weights = await writeRandomAdapter(adir, model, { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'] }, 9);
    const path = join(dir, 'adapter.gguf');
    writeGgufLora(adir, model, path);
    model.weights.close();
    const info = await readGgufFileInfo(path, { logWarnings: false });
    const m = info.metadata as unknown as { general: Record<string, unknown>; adapter: { type: string; lora: { alpha: number } } };
    assert.equal(m.general.type, 'adapter');
    assert.equal(m.general.architecture, 'qwen2');
    assert.equal(m.adapter.type, 'lora');
    assert.equal(m.adapter.lora.alpha, 8);
    assert.equal(info.tensorInfo!.length, 2 * 2 * 2);
    const a = info.tensorInfo!.find((t) => t.name === 'blk.1.attn_v.weight.lora_a')!;
    const b = info.tensorInfo!.find((t) => t.name === 'blk.1.attn_v.weight.lora_b')!;
    assert.deepEqual(a.dimensions.map(Number), [32, 4]);
    assert.deepEqual(b.dimensions.map(Number), [4, 16]);
    const peft = weights.get('model.layers.1.self_attn.v_proj')!;
    assert.deepEqual(new Float32Array(readBytes(path, Number(a.fileOffset), peft.A.byteLength).buffer), peft.A);
    assert.deepEqual(new Float32Array(readBytes(path, Number(b.fileOffset), peft.B.byteLength).buffer), peft.B);
  });

  it('llama.cpp loads and runs every written type', async () => {
    for (const [type, { path }] of files) {
      const [tokens] = await llamaGreedyTokens({ ggufModel: path, prompts: [[1, 2, 3]], maxTokens: 3, threads: 1 });
      assert.equal(tokens!.length, 3, type);
      for (const t of tokens!) assert.ok(Number.isInteger(t) && t >= 0 && t < tiny.vocabSize, `${type}: token ${t}`);
    }
  });
});

describe('loraserve and llama.cpp run the same model (F32, greedy)', () => {
  for (const family of ['qwen2', 'llama'] as const) {
    it(`${family}: the same continuations with and without an adapter`, async () => {
      const report = await peerAgreement({ family, dir: tempDir(), tokens: 8, prompts: 2, hidden: 32 });
      for (const c of report.cases)
        assert.equal(
          c.llamaText,
          c.loraserveText,
          `${c.adapter ? 'adapter' : 'base'} prompt [${c.prompt}]: llama.cpp ids [${c.llamaTokens}]`,
        );
      assert.ok(report.adapterChangesOutput, 'the adapter changes the continuation');
    });
  }
});
