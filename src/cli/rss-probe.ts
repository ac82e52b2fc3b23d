/**
 * Resident memory and one-stream speed of an engine, measured in a fresh child process so that
 * neither the parent's heap nor another engine's memory or thread pool is counted: the figures
 * behind `int4_rss_vs_fp32` and the README's quantization table.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Engine } from '../engine/index.js';
import type { QuantizeMode } from '../model/index.js';

export interface RssProbeOptions {
  modelDir: string;
  quantize: QuantizeMode | null;
  quantCacheDir?: string | null;
  threads?: number;
  promptTokens?: number;
  generatedTokens?: number;
}

export interface RssReport {
  quantize: QuantizeMode | null;
  /** Seconds to create the engine: quantization or cache read, graph build, ORT session. */
  loadSeconds: number;
  /** True when the quantized weights came from the disk cache. */
  cacheReused: boolean | null;
  /** Resident set after loading and generating, in MiB. */
  rssMiB: number;
  /** Peak resident set of the child process, in MiB. */
  peakRssMiB: number;
  /** Decode speed of one greedy stream (prompt excluded). */
  tokensPerSecond: number;
}

const MiB = 1024 * 1024;

export function measureRss(options: RssProbeOptions): Promise<RssReport> {
  const self = fileURLToPath(import.meta.url);
  // execArgv carries the TypeScript loader (`--import tsx`) the parent runs under.
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [...process.execArgv, self, JSON.stringify(options)], { maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`rss probe failed: ${stderr || err.message}`, { cause: err }));
      else resolve(JSON.parse(stdout.trim().split('\n').pop()!) as RssReport);
    });
  });
}

async function probe(o: RssProbeOptions): Promise<RssReport> {
  const start = performance.now();
  const engine = await Engine.create({ modelDir: o.modelDir, quantize: o.quantize, quantCacheDir: o.quantCacheDir ?? null, slots: 0, threads: o.threads ?? 0, maxBatch: 1 });
  const loadSeconds = (performance.now() - start) / 1000;
  const vocab = engine.model.dims.vocabSize;
  const prompt = Array.from({ length: o.promptTokens ?? 16 }, (_, i) => (i * 7919 + 13) % vocab);
  // Decode time = a request of 1 + n tokens minus one of 1 token (the prompt's cost), best of two.
  const seconds = async (maxTokens: number) => {
    let best = Infinity;
    for (let i = 0; i < 2; i++) {
      const start = performance.now();
      await engine.generate({ promptTokens: prompt, maxTokens, ignoreEos: true, sampling: { temperature: 0 } }).result;
      best = Math.min(best, (performance.now() - start) / 1000);
    }
    return best;
  };
  const generated = o.generatedTokens ?? 16;
  const prefillSeconds = await seconds(1);
  const decodeSeconds = (await seconds(generated + 1)) - prefillSeconds;
  const report: RssReport = {
    quantize: o.quantize,
    loadSeconds: +loadSeconds.toFixed(2),
    cacheReused: engine.quantization ? engine.quantization.entry.reused : null,
    rssMiB: Math.round(process.memoryUsage.rss() / MiB),
    peakRssMiB: Math.round((process.resourceUsage().maxRSS * 1024) / MiB),
    tokensPerSecond: +(generated / decodeSeconds).toFixed(2),
  };
  await engine.close();
  return report;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const report = await probe(JSON.parse(process.argv[2]!) as RssProbeOptions);
  process.stdout.write(`${JSON.stringify(report)}\n`);
}
