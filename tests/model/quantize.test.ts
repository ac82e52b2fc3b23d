import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readdirSync, readFileSync, statSync, truncateSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { OnnxSession } from '../../src/engine/onnx-backend.js';
import { OPSET } from '../../src/model/build-graph.js';
import { GraphBuilder } from '../../src/model/graph-builder.js';
import {
  cachedQuantized,
  constQuantized,
  matMulNBits,
  type AccuracyLevel,
  type QuantizedInitializers,
} from '../../src/model/matmul-nbits.js';
import { encodeModel, TensorDataType } from '../../src/model/onnx-proto.js';
import { quantizedWeights } from '../../src/model/quant-cache.js';
import { quantizeWeight, type QuantBits } from '../../src/model/quantize.js';
import { loadHfModel } from '../../src/model/index.js';
import { writeRandomModel } from '../../src/testing/random-model.js';
import { rng } from '../../src/util/rng.js';
import { tempDir } from '../helpers/adapters.js';
import { dequantize, matmulRef } from '../helpers/quant.js';
import { relError } from '../helpers/reference.js';

const sessions: OnnxSession[] = [];
after(async () => {
  for (const s of sessions) await s.release();
});

/** Runs `y = x @ Wᵀ (+ b)` as one MatMulNBits node in ORT. */
async function runNode(
  x: Float32Array,
  m: number,
  k: number,
  n: number,
  makeWeight: (g: GraphBuilder) => QuantizedInitializers,
  accuracy: AccuracyLevel,
  bias?: Float32Array,
): Promise<Float32Array> {
  const g = new GraphBuilder();
  g.input({ name: 'x', elemType: TensorDataType.FLOAT, shape: ['m', k] });
  const y = matMulNBits(g, 'x', makeWeight(g), bias ? g.constFloat(bias) : null, accuracy);
  g.output(y, { name: 'y', elemType: TensorDataType.FLOAT, shape: ['m', n] });
  const bytes = encodeModel(g.graph('one-node'), OPSET, 'test');
  const s = await OnnxSession.create({ bytes, externalDir: g.externalDir ?? tempDir() }, { provider: 'cpu', threads: 1 });
  sessions.push(s);
  return (await s.run({ x: { type: 'float32', data: x, dims: [m, k] } })).host.y!.data as Float32Array;
}

describe('block-wise quantization in MatMulNBits layout', () => {
  // K = 80 leaves a last block of 16 (padded) and an odd block count (packed 4-bit zero points).
  const N = 24;
  const K = 80;
  const r = rng(5);
  const w = r.tensor(N * K, 0.3);
  // a block of zeros and an all-positive block: zero must stay exact, the range must not collapse
  w.fill(0, 0, 32);
  for (let i = K; i < K + 32; i++) w[i] = Math.abs(w[i]!) + 0.5;

  for (const bits of [4, 8] as const) {
    it(`${bits}-bit: every value dequantizes within half a step of its block`, () => {
      const q = quantizeWeight(w, N, K, { bits, blockSize: 32 });
      assert.equal(q.kBlocks, 3);
      assert.equal(q.data.length, (N * 3 * (32 * bits)) / 8);
      assert.equal(q.zeroPoints.length, N * (bits === 4 ? 2 : 3));
      const back = dequantize(q);
      for (let n = 0; n < N; n++) {
        for (let k = 0; k < K; k++) {
          const step = q.scales[n * q.kBlocks + Math.floor(k / 32)]!;
          const err = Math.abs(back[n * K + k]! - w[n * K + k]!);
          assert.ok(
            err <= step * 0.5 * (1 + 1e-5) + 1e-12,
            `w[${n},${k}] = ${w[n * K + k]} came back as ${back[n * K + k]} (step ${step})`,
          );
        }
      }
      for (let k = 0; k < 32; k++) assert.equal(back[k], 0);
      // the step of a block is its range over the code range (zero included in the range)
      const block = w.subarray(K, K + 32);
      assert.ok(Math.abs(q.scales[q.kBlocks]! - Math.max(...block) / (2 ** bits - 1)) < 1e-6);
      // relative RMS error over the whole matrix
      let se = 0;
      let sw = 0;
      for (let i = 0; i < w.length; i++) {
        se += (back[i]! - w[i]!) ** 2;
        sw += w[i]! ** 2;
      }
      assert.ok(Math.sqrt(se / sw) < (bits === 8 ? 0.005 : 0.08), `relative RMS error ${Math.sqrt(se / sw)}`);
    });
  }

  it('a fan_in_fan_out weight ([in, out]) quantizes as its transpose', () => {
    const t = new Float32Array(N * K);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) t[k * N + n] = w[n * K + k]!;
    const a = quantizeWeight(w, N, K, { bits: 4, blockSize: 32 });
    const b = quantizeWeight(t, N, K, { bits: 4, blockSize: 32, fanInFanOut: true });
    assert.deepEqual(b.data, a.data);
    assert.deepEqual(b.scales, a.scales);
    assert.deepEqual(b.zeroPoints, a.zeroPoints);
  });

  it('refuses settings MatMulNBits cannot run', () => {
    assert.throws(() => quantizeWeight(w, N, K, { bits: 3 as QuantBits, blockSize: 32 }), /bits must be 4 or 8/);
    assert.throws(() => quantizeWeight(w, N, K, { bits: 4, blockSize: 24 }), /power of two/);
    assert.throws(() => quantizeWeight(w, N, K + 1, { bits: 4, blockSize: 32 }), /values/);
  });
});

describe('one MatMulNBits node in ONNX Runtime', () => {
  const M = 5;
  const N = 24;
  const K = 80;
  const r = rng(9);
  const w = r.tensor(N * K, 0.3);
  const x = r.tensor(M * K, 1);
  const bias = r.tensor(N, 0.2);

  for (const bits of [4, 8] as const) {
    it(`${bits}-bit, accuracy_level 0: equals x @ dequantized(W)ᵀ + b`, async () => {
      const q = quantizeWeight(w, N, K, { bits, blockSize: 32 });
      const y = await runNode(x, M, K, N, (g) => constQuantized(g, q), 0, bias);
      const err = relError(y, matmulRef(x, dequantize(q), M, K, N, bias));
      assert.ok(err < 1e-5, `relative error ${err}`);
    });

    it(`${bits}-bit, accuracy_level 4 (int8 activations): within 2% of x @ dequantized(W)ᵀ`, async () => {
      const q = quantizeWeight(w, N, K, { bits, blockSize: 32 });
      const y = await runNode(x, M, K, N, (g) => constQuantized(g, q), 4);
      const err = relError(y, matmulRef(x, dequantize(q), M, K, N));
      assert.ok(err < 0.02, `relative error ${err}`);
    });
  }
});

describe('quantization disk cache', () => {
  function model() {
    const dir = join(tempDir(), 'model');
    writeRandomModel(dir, { family: 'gpt2', seed: 31, hidden: 64, heads: 4 });
    return loadHfModel(dir);
  }
  const settings = { bits: 4, blockSize: 32 } as const;
  const entryFiles = (dir: string) => readdirSync(dir).filter((f) => f.startsWith('quant-'));

  it('writes an entry once, then reads it back; ORT runs the weights in place from it', async () => {
    const m = model();
    const cacheDir = join(m.dir, '.loraserve-cache');
    const first = await quantizedWeights(m.weights, m.linears, settings, cacheDir);
    assert.equal(first.reused, false);
    assert.deepEqual(entryFiles(cacheDir), [first.file.split('/').pop()]);
    const mtime = statSync(first.file).mtimeMs;
    const second = await quantizedWeights(m.weights, m.linears, settings, cacheDir);
    assert.equal(second.reused, true);
    assert.equal(second.file, first.file);
    assert.equal(statSync(second.file).mtimeMs, mtime);
    // The GPT-2 Conv1D weight [in, out] runs through ORT from the cache file and matches its
    // in-memory quantization and the dequantized reference.
    const c = m.linears.find((l) => l.name.endsWith('mlp.c_fc'))!;
    const q = quantizeWeight(m.weights.readF32(c.weight), c.outFeatures, c.inFeatures, { ...settings, fanInFanOut: true });
    const x = rng(2).tensor(3 * c.inFeatures, 1);
    const fromCache = await runNode(x, 3, c.inFeatures, c.outFeatures, (g) => cachedQuantized(g, second, c.weight), 0);
    const inMemory = await runNode(x, 3, c.inFeatures, c.outFeatures, (g) => constQuantized(g, q), 0);
    assert.deepEqual(fromCache, inMemory);
    assert.ok(relError(fromCache, matmulRef(x, dequantize(q), 3, c.inFeatures, c.outFeatures)) < 1e-5);
  });

  it('a cache folder outside the model folder works too', async () => {
    const m = model();
    const entry = await quantizedWeights(m.weights, m.linears, settings, tempDir());
    const c = m.linears[0]!;
    const x = rng(3).tensor(c.inFeatures, 1);
    const y = await runNode(x, 1, c.inFeatures, c.outFeatures, (g) => cachedQuantized(g, entry, c.weight), 0);
    assert.equal(y.length, c.outFeatures);
  });

  it('ignores and rebuilds an entry with a flipped byte, a truncated entry and one for other settings', async () => {
    const m = model();
    const cacheDir = join(m.dir, '.loraserve-cache');
    const { file } = await quantizedWeights(m.weights, m.linears, settings, cacheDir);
    const good = readFileSync(file);
    const fd = openSync(file, 'r+');
    writeSync(fd, Uint8Array.of(good[good.length - 100]! ^ 0xff), 0, 1, good.length - 100);
    closeSync(fd);
    const afterFlip = await quantizedWeights(m.weights, m.linears, settings, cacheDir);
    assert.equal(afterFlip.reused, false);
    assert.deepEqual(readFileSync(file), good);

    truncateSync(file, good.length - 1000);
    assert.equal((await quantizedWeights(m.weights, m.linears, settings, cacheDir)).reused, false);
    assert.deepEqual(readFileSync(file), good);

    writeFileSync(file, 'not a safetensors file');
    assert.equal((await quantizedWeights(m.weights, m.linears, settings, cacheDir)).reused, false);
    assert.equal((await quantizedWeights(m.weights, m.linears, settings, cacheDir)).reused, true);

    const int8 = await quantizedWeights(m.weights, m.linears, { bits: 8, blockSize: 32 }, cacheDir);
    assert.equal(int8.reused, false);
    assert.notEqual(int8.file, file);
  });

  it('a retrained model with the same size and modification time gets a new entry', async () => {
    const m = model();
    const cacheDir = join(m.dir, '.loraserve-cache');
    const before = await quantizedWeights(m.weights, m.linears, settings, cacheDir);
    const path = join(m.dir, 'model.safetensors');
    const { atime, mtime, size } = statSync(path);
    writeRandomModel(m.dir, { family: 'gpt2', seed: 32, hidden: 64, heads: 4 });
    utimesSync(path, atime, mtime);
    assert.equal(statSync(path).size, size);
    const retrained = loadHfModel(m.dir);
    const after = await quantizedWeights(retrained.weights, retrained.linears, settings, cacheDir);
    assert.equal(after.reused, false);
    assert.notEqual(after.file, before.file);
  });

  it("removes a crashed writer's old temp file and leaves a fresh one alone", async () => {
    const m = model();
    const cacheDir = join(m.dir, '.loraserve-cache');
    await quantizedWeights(m.weights, m.linears, settings, cacheDir);
    const old = join(cacheDir, '.quant-4bit-b32-x.safetensors.aaaa.tmp');
    const fresh = join(cacheDir, '.quant-4bit-b32-x.safetensors.bbbb.tmp');
    writeFileSync(old, 'partial');
    writeFileSync(fresh, 'in flight');
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    utimesSync(old, twoHoursAgo, twoHoursAgo);
    assert.equal((await quantizedWeights(m.weights, m.linears, settings, cacheDir)).reused, true);
    const names = readdirSync(cacheDir);
    assert.ok(!names.includes('.quant-4bit-b32-x.safetensors.aaaa.tmp'));
    assert.ok(names.includes('.quant-4bit-b32-x.safetensors.bbbb.tmp'));
  });
});
