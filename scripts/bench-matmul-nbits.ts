/**
 * Single-op timings behind the quantization defaults: MatMulNBits (4/8-bit, block 32,
 * accuracy_level 0 and 4) against the float32 Gemm the graph uses today, on one linear layer,
 * for one decode row (M=1) and a batch (M=32). Prints a table and JSON; never part of `npm test`.
 *
 *   node --import tsx scripts/bench-matmul-nbits.ts [--threads 2] [--seconds 0.4]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OnnxSession } from '../src/engine/onnx-backend.js';
import { GraphBuilder } from '../src/model/graph-builder.js';
import { constQuantized, matMulNBits, type AccuracyLevel } from '../src/model/matmul-nbits.js';
import { encodeModel, TensorDataType } from '../src/model/onnx-proto.js';
import { quantizeWeight, type QuantBits } from '../src/model/quantize.js';
import { OPSET } from '../src/model/build-graph.js';
import { rng } from '../src/util/rng.js';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const threads = arg('threads', 2);
const seconds = arg('seconds', 0.4);

type Variant = { label: string; bits: QuantBits | null; accuracy: AccuracyLevel };
const variants: Variant[] = [
  { label: 'fp32 Gemm', bits: null, accuracy: 0 },
  { label: 'int8 acc0', bits: 8, accuracy: 0 },
  { label: 'int8 acc4', bits: 8, accuracy: 4 },
  { label: 'int4 acc0', bits: 4, accuracy: 0 },
  { label: 'int4 acc4', bits: 4, accuracy: 4 },
];

async function session(weight: Float32Array, k: number, n: number, v: Variant, dir: string): Promise<OnnxSession> {
  const g = new GraphBuilder();
  const x = g.input({ name: 'x', elemType: TensorDataType.FLOAT, shape: ['m', k] });
  const y =
    v.bits === null
      ? g.op('Gemm', [x, g.constFloat(weight, [n, k])], { transB: 1 })
      : matMulNBits(g, x, constQuantized(g, quantizeWeight(weight, n, k, { bits: v.bits, blockSize: 32 })), null, v.accuracy);
  g.output(y, { name: 'y', elemType: TensorDataType.FLOAT, shape: ['m', n] });
  return OnnxSession.create({ bytes: encodeModel(g.graph('bench'), OPSET, 'bench'), externalDir: dir }, { provider: 'cpu', threads });
}

/** Median of several timed rounds, each as many runs as fit in `seconds / rounds`. */
async function time(s: OnnxSession, x: Float32Array, m: number, k: number): Promise<number> {
  const feeds = { x: { type: 'float32' as const, data: x, dims: [m, k] } };
  for (let i = 0; i < 3; i++) await s.run(feeds);
  const rounds: number[] = [];
  for (let r = 0; r < 5; r++) {
    let runs = 0;
    const start = performance.now();
    while (performance.now() - start < (seconds * 1000) / 5) {
      await s.run(feeds);
      runs++;
    }
    rounds.push((performance.now() - start) / runs);
  }
  return rounds.sort((a, b) => a - b)[2]!;
}

const dir = mkdtempSync(join(tmpdir(), 'loraserve-nbits-'));
const r = rng(7);
const results: Array<Record<string, number | string>> = [];
try {
  for (const [k, n] of [
    [768, 2304],
    [896, 4864],
  ] as const) {
    const weight = r.tensor(n * k, 0.02);
    const inputs = new Map([1, 32].map((m) => [m, r.tensor(m * k, 1)]));
    // One session alive at a time: an idle session's spinning thread pool would steal the cores.
    // Two passes over the variants, best of both, to dampen other load on the machine.
    const best = new Map<string, number>();
    for (let pass = 0; pass < 2; pass++) {
      for (const v of variants) {
        const s = await session(weight, k, n, v, dir);
        for (const [m, x] of inputs) {
          const ms = await time(s, x, m, k);
          const key = `${m}|${v.label}`;
          best.set(key, Math.min(best.get(key) ?? Infinity, ms));
        }
        await s.release();
      }
    }
    for (const m of inputs.keys()) {
      const ms = variants.map((v) => best.get(`${m}|${v.label}`)!);
      const row: Record<string, number | string> = { shape: `${m}x${k}x${n}` };
      variants.forEach((v, i) => (row[v.label] = Number(ms[i]!.toFixed(3))));
      results.push(row);
      console.log(
        [row.shape, ...variants.map((v, i) => `${v.label} ${ms[i]!.toFixed(3)} ms (${(ms[0]! / ms[i]!).toFixed(2)}x)`)].join(' | '),
      );
    }
  }
  console.log(JSON.stringify({ threads, results }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
