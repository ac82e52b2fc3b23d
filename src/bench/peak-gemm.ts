/**
 * The machine's fp32 matmul ceiling as ONNX Runtime reaches it: one large MatMul (the weight a
 * constant, as in the model graphs, so MLAS prepacks it) at a few shapes, the best run of each.
 * `hetero_gemm_efficiency` divides the hetero run's useful FLOP/s by this.
 */
import { rmSync } from 'node:fs';
import { OnnxSession, type ExecutionProvider } from '../engine/index.js';
import { GraphBuilder, encodeModel, TensorDataType, OPSET } from '../model/index.js';
import { tempDir } from '../testing/index.js';
import { rng } from '../util/rng.js';

export interface PeakGemm {
  /** The best rate over the shapes tried, GFLOP/s (2·M·K·N per run). */
  gflops_per_s: number;
  /** M×K×N of the best shape. */
  shape: string;
  /** Best time of one run per shape, ms. */
  ms: Record<string, number>;
}

/** M×K×N: square ones, and the hetero prefill's widest matmul (32 prompts of 64 rows through the 768→3072 MLP). */
const SHAPES: ReadonlyArray<readonly [number, number, number]> = [
  [1024, 1024, 1024],
  [2048, 2048, 2048],
  [2048, 768, 3072],
];

export async function peakGemm({
  threads,
  provider,
  repeats = 5,
}: {
  threads: number;
  provider: ExecutionProvider;
  repeats?: number;
}): Promise<PeakGemm> {
  const dir = tempDir('loraserve-gemm-');
  const r = rng(11);
  const ms: Record<string, number> = {};
  let best = { gflops: 0, shape: '' };
  try {
    for (const [m, k, n] of SHAPES) {
      const g = new GraphBuilder();
      const x = g.input({ name: 'x', elemType: TensorDataType.FLOAT, shape: [m, k] });
      g.output(g.op('MatMul', [x, g.constFloat(r.tensor(k * n, 0.02), [k, n])]), {
        name: 'y',
        elemType: TensorDataType.FLOAT,
        shape: [m, n],
      });
      // One session alive at a time: an idle session's spinning thread pool would steal the cores.
      const s = await OnnxSession.create({ bytes: encodeModel(g.graph('gemm'), OPSET, 'gemm'), externalDir: dir }, { provider, threads });
      try {
        const feeds = { x: { type: 'float32' as const, data: r.tensor(m * k, 1), dims: [m, k] } };
        await s.run(feeds); // warm-up: prepacking and allocation
        let fastest = Infinity;
        for (let i = 0; i < repeats; i++) {
          const start = performance.now();
          await s.run(feeds);
          fastest = Math.min(fastest, performance.now() - start);
        }
        const shape = `${m}x${k}x${n}`;
        ms[shape] = +fastest.toFixed(2);
        const gflops = (2 * m * k * n) / (fastest * 1e6);
        if (gflops > best.gflops) best = { gflops, shape };
      } finally {
        await s.release();
      }
    }
    return { gflops_per_s: +best.gflops.toFixed(1), shape: best.shape, ms };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
