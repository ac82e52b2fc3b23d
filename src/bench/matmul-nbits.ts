/**
 * Single-op timings behind the quantization defaults: MatMulNBits (4/8-bit, block 32,
 * accuracy_level 0 and 4) against the float32 Gemm the graph uses today, on one linear layer,
 * for one decode row (M=1) and a batch (M=32); never part of `npm test`.
 *
 *   npm run bench:matmul-nbits [-- --threads 2] [--seconds 0.4]
 */
import { rmSync } from 'node:fs';
import { OnnxSession } from '../engine/index.js';
import {
  GraphBuilder,
  constQuantized,
  matMulNBits,
  encodeModel,
  quantizeWeight,
  TensorDataType,
  OPSET,
  type AccuracyLevel,
  type QuantBits,
} from '../model/index.js';
import { tempDir } from '../testing/index.js';
import { rng } from '../util/rng.js';

type Variant = { label: string; bits: QuantBits | null; accuracy: AccuracyLevel };
const variants: Variant[] = [
  { label: 'fp32 Gemm', bits: null, accuracy: 0 },
  { label: 'int8 acc0', bits: 8, accuracy: 0 },
  { label: 'int8 acc4', bits: 8, accuracy: 4 },
  { label: 'int4 acc0', bits: 4, accuracy: 0 },
  { label: 'int4 acc4', bits: 4, accuracy: 4 },
];

async function session(weight: Float32Array, k: number, n: number, v: Variant, dir: string, threads: number): Promise<OnnxSession> {
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
async function time(s: OnnxSession, x: Float32Array, m: number, k: number, seconds: number): Promise<number> {
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

/** Milliseconds per run of each variant for each shape; `log` gets one line per shape as it is measured. */
export async function benchMatMulNBits(
  { threads, seconds }: { threads: number; seconds: number },
  log: (line: string) => void,
): Promise<Array<Record<string, number | string>>> {
  const dir = tempDir('loraserve-nbits-');
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
          const s = await session(weight, k, n, v, dir, threads);
          for (const [m, x] of inputs) {
            const ms = await time(s, x, m, k, seconds);
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
        log([row.shape, ...variants.map((v, i) => `${v.label} ${ms[i]!.toFixed(3)} ms (${(ms[0]! / ms[i]!).toFixed(2)}x)`)].join(' | '));
      }
    }
    return results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
