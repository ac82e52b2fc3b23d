import { ENGINE_DEFAULTS, type ExecutionProvider } from '../engine/index.js';
import type { QuantizeMode } from '../model/index.js';

/** Everything the server is configured with; flags and LORASERVE_* environment variables map onto it. */
export interface ServerConfig {
  modelDir: string;
  adaptersDir: string;
  host: string;
  port: number;
  provider: ExecutionProvider;
  /** Adapter slots on the device (slot 0, the base model, not counted). */
  slots: number;
  maxRank: number;
  loraModules: string[] | 'all-linear';
  /** Host-memory bound of the parsed-adapter cache. */
  hostCacheBytes: number;
  /** Bytes of cached prompt prefixes kept on the KV cache's device (0: no prefix cache). */
  prefixCacheBytes: number;
  maxBatch: number;
  maxBatchTokens: number;
  prefillChunk: number;
  threads: number;
  /** Weight-only quantization of the base model (int8 | int4); null serves float32. */
  quantize: QuantizeMode | null;
  /** Cache folder for quantized weights; null: `.loraserve-cache` inside the model folder. */
  quantCacheDir: string | null;
  keysFile: string | null;
  /** Root under which vLLM-style load_lora_adapter may read adapters by path; null disables it. */
  loraRoot: string | null;
  preload: string[];
  /** Upper bound on max_tokens a request may ask for. */
  maxTokens: number;
  /** Largest `n` (choices per prompt) a request may ask. */
  maxChoices: number;
  maxPromptTokens: number;
  /** Requests waiting (for a slot or a batch row) beyond which new ones get 429. */
  maxQueue: number;
  /** Most adapters one weighted mix may name (each takes a device slot for the request). */
  maxMixAdapters: number;
  requestTimeoutMs: number;
  drainTimeoutMs: number;
  chatBodyBytes: number;
  uploadBytes: number;
  logLevel: string;
  /** "auto": the model's generation_config.json gives defaults for unset sampling fields (as vLLM); "none": OpenAI's defaults. */
  generationConfig: 'auto' | 'none';
  /** When set, /metrics (which names adapters) answers only `Authorization: Bearer <metricsKey>` or an admin key. */
  metricsKey: string | null;
  /** When set, /metrics moves off the API listener to its own one on metricsHost:metricsPort. */
  metricsPort: number | null;
  metricsHost: string;
  /** Where training files and fine-tuning jobs are kept; null: `.finetune` inside the adapter store folder. */
  finetuneDir: string | null;
  /** Threads each fine-tuning worker's trainer may use. */
  trainingThreads: number;
  /** Fine-tuning jobs training at once; the rest are queued. */
  maxTrainingJobs: number;
  /** Largest training file accepted by /v1/files, in bytes. */
  trainingFileBytes: number;
  /** Most examples (lines) in one training file. */
  trainingFileLines: number;
}

export const DEFAULTS: Omit<ServerConfig, 'modelDir'> = {
  adaptersDir: 'adapters',
  host: '127.0.0.1',
  port: 8000,
  ...ENGINE_DEFAULTS,
  // adapters trained with the seed tutorial's settings reach rank 32
  maxRank: 32,
  hostCacheBytes: 512 * 1024 * 1024,
  keysFile: null,
  loraRoot: null,
  preload: [],
  maxTokens: 1024,
  maxChoices: 8,
  maxPromptTokens: 4096,
  maxQueue: 256,
  maxMixAdapters: 4,
  requestTimeoutMs: 600_000,
  drainTimeoutMs: 30_000,
  chatBodyBytes: 1024 * 1024,
  uploadBytes: 1024 * 1024 * 1024,
  logLevel: 'info',
  generationConfig: 'auto',
  metricsKey: null,
  metricsPort: null,
  metricsHost: '127.0.0.1',
  finetuneDir: null,
  trainingThreads: 1,
  maxTrainingJobs: 1,
  trainingFileBytes: 64 * 1024 * 1024,
  trainingFileLines: 100_000,
};
