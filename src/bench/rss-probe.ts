/**
 * Child process of the benchmark: loads one engine, generates a little, and prints its resident
 * memory as JSON on stdout. A process of its own, so nothing the benchmark built or measured
 * before (model writing, other engines) is counted.
 *
 *   node --import tsx src/bench/rss-probe.ts '{"modelDir": "...", "slots": 8, ...}'
 */
import { Engine, type EngineOptions } from '../engine/index.js';

export interface RssProbeResult {
  rss_bytes: number;
  /** Float32 bytes of every weight of the model (the denominator of rss_vs_weights). */
  weights_f32_bytes: number;
  kv_bytes: number;
}

const options = JSON.parse(process.argv[2] ?? '{}') as EngineOptions & { promptTokens: number; generate: number };
const engine = await Engine.create(options);
const prompt = Array.from({ length: options.promptTokens }, (_, i) => (i * 7919) % engine.model.dims.vocabSize);
await engine.generate({ promptTokens: prompt, maxTokens: options.generate, ignoreEos: true, sampling: { temperature: 0 } }).result;
let weights = 0;
for (const name of engine.model.weights.names()) weights += engine.model.weights.ref(name).shape.reduce((a, b) => a * b, 1) * 4;
const result: RssProbeResult = { rss_bytes: process.memoryUsage().rss, weights_f32_bytes: weights, kv_bytes: 0 };
// the cache of a finished request is released; report what a running one would hold at this length
const { layers, kvHeads, headDim } = engine.model.dims;
result.kv_bytes = 2 * layers * kvHeads * headDim * 4 * (options.promptTokens + options.generate);
process.stdout.write(`${JSON.stringify(result)}\n`);
await engine.close();
