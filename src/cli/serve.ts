import { parseArgs } from 'node:util';
import { ConfigError } from '../errors.js';
import { numberFlag } from './flags.js';
import { ANONYMOUS_ADMIN, buildApp, DEFAULTS, KeyRing, Serving, type ServerConfig } from '../server/index.js';
import type { ExecutionProvider } from '../engine/index.js';
import { QUANTIZE_MODES } from '../model/index.js';

const text = (raw: string) => raw;
const list = (raw: string) => raw.split(',').map((s) => s.trim()).filter(Boolean);

/** Each flag, its LORASERVE_* variable, and how to read it. */
const FLAGS = {
  model: { env: 'LORASERVE_MODEL', help: 'Hugging Face model folder', parse: text },
  adapters: { env: 'LORASERVE_ADAPTERS', help: 'adapter store folder', parse: text },
  host: { env: 'LORASERVE_HOST', help: 'bind address', parse: text },
  port: { env: 'LORASERVE_PORT', help: 'port', parse: numberFlag },
  provider: { env: 'LORASERVE_PROVIDER', help: 'cpu | cuda | webgpu', parse: text },
  slots: { env: 'LORASERVE_SLOTS', help: 'adapter slots on the device', parse: numberFlag },
  'max-rank': { env: 'LORASERVE_MAX_RANK', help: 'largest LoRA rank served', parse: numberFlag },
  'lora-modules': {
    env: 'LORASERVE_LORA_MODULES',
    help: 'all-linear, or comma-separated module names with LoRA slots',
    parse: (v: string) => (v === 'all-linear' ? v : list(v)),
  },
  'host-cache-bytes': { env: 'LORASERVE_HOST_CACHE_BYTES', help: 'host-memory bound of parsed adapters', parse: numberFlag },
  'max-batch': { env: 'LORASERVE_MAX_BATCH', help: 'rows per forward pass', parse: numberFlag },
  'max-batch-tokens': { env: 'LORASERVE_MAX_BATCH_TOKENS', help: 'padded prompt tokens per prefill step', parse: numberFlag },
  'prefill-chunk': {
    env: 'LORASERVE_PREFILL_CHUNK',
    help: 'most prompt tokens of one request per step (longer prompts alternate chunks with decode steps)',
    parse: numberFlag,
  },
  threads: { env: 'LORASERVE_THREADS', help: 'ONNX Runtime intra-op threads (0 = all cores)', parse: numberFlag },
  quantize: { env: 'LORASERVE_QUANTIZE', help: 'int8 | int4: weight-only quantization of the base model (none = float32)', parse: (v: string) => (v === 'none' ? null : v) },
  'quant-cache-dir': { env: 'LORASERVE_QUANT_CACHE_DIR', help: 'where quantized weights are cached (default: MODEL/.loraserve-cache)', parse: text },
  keys: { env: 'LORASERVE_KEYS', help: 'API keys file (JSON)', parse: text },
  'lora-root': { env: 'LORASERVE_LORA_ROOT', help: 'root for vLLM-style load_lora_adapter paths', parse: text },
  preload: { env: 'LORASERVE_PRELOAD', help: 'comma-separated adapters to warm at start', parse: list },
  'max-tokens': { env: 'LORASERVE_MAX_TOKENS', help: 'largest max_tokens a request may ask', parse: numberFlag },
  'max-prompt-tokens': { env: 'LORASERVE_MAX_PROMPT_TOKENS', help: 'longest prompt accepted', parse: numberFlag },
  'max-queue': { env: 'LORASERVE_MAX_QUEUE', help: 'waiting requests before 429', parse: numberFlag },
  'max-mix-adapters': { env: 'LORASERVE_MAX_MIX_ADAPTERS', help: 'most adapters in one weighted mix', parse: numberFlag },
  'request-timeout-ms': { env: 'LORASERVE_REQUEST_TIMEOUT_MS', help: 'per-request time limit', parse: numberFlag },
  'drain-timeout-ms': { env: 'LORASERVE_DRAIN_TIMEOUT_MS', help: 'how long SIGTERM waits for running requests', parse: numberFlag },
  'upload-bytes': { env: 'LORASERVE_UPLOAD_BYTES', help: 'largest adapter upload', parse: numberFlag },
  'log-level': { env: 'LORASERVE_LOG_LEVEL', help: 'pino log level', parse: text },
} as const;

const KEY_OF: Record<keyof typeof FLAGS, keyof ServerConfig> = {
  model: 'modelDir', adapters: 'adaptersDir', host: 'host', port: 'port', provider: 'provider', slots: 'slots', 'max-rank': 'maxRank',
  'lora-modules': 'loraModules', 'host-cache-bytes': 'hostCacheBytes', 'max-batch': 'maxBatch', 'max-batch-tokens': 'maxBatchTokens', 'prefill-chunk': 'prefillChunk',
  threads: 'threads', quantize: 'quantize', 'quant-cache-dir': 'quantCacheDir', keys: 'keysFile', 'lora-root': 'loraRoot', preload: 'preload', 'max-tokens': 'maxTokens',
  'max-prompt-tokens': 'maxPromptTokens', 'max-queue': 'maxQueue', 'max-mix-adapters': 'maxMixAdapters', 'request-timeout-ms': 'requestTimeoutMs',
  'drain-timeout-ms': 'drainTimeoutMs', 'upload-bytes': 'uploadBytes', 'log-level': 'logLevel',
};

export const DEMO_MODEL = 'models/loraserve-demo';

export function serveUsage(): string {
  const lines = Object.entries(FLAGS).map(([flag, f]) => `  --${flag.padEnd(20)} ${f.help} (${f.env})`);
  return `loraserve serve [options]\n\n${lines.join('\n')}\n\nDefaults: model ${DEMO_MODEL}, adapters ./adapters, 127.0.0.1:8000.`;
}

export function parseServeArgs(args: string[], env: NodeJS.ProcessEnv): ServerConfig {
  const { values } = parseArgs({ args, options: Object.fromEntries(Object.keys(FLAGS).map((k) => [k, { type: 'string' as const }])), strict: true });
  const config: Record<string, unknown> = { ...DEFAULTS, modelDir: DEMO_MODEL };
  for (const [flag, spec] of Object.entries(FLAGS) as Array<[keyof typeof FLAGS, (typeof FLAGS)[keyof typeof FLAGS]]>) {
    const raw = (values as Record<string, string | undefined>)[flag] ?? env[spec.env];
    if (raw === undefined || raw === '') continue;
    config[KEY_OF[flag]] = spec.parse(raw, flag);
  }
  if (!['cpu', 'cuda', 'webgpu'].includes(config.provider as string)) {
    throw new ConfigError(`--provider must be cpu, cuda or webgpu, not "${String(config.provider)}"`, { param: 'provider' });
  }
  if (config.quantize !== null && !(QUANTIZE_MODES as readonly unknown[]).includes(config.quantize)) {
    throw new ConfigError(`--quantize must be int8, int4 or none, not "${String(config.quantize)}"`, { param: 'quantize' });
  }
  return config as unknown as ServerConfig & { provider: ExecutionProvider };
}

export async function serve(args: string[]): Promise<void> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${serveUsage()}\n`);
    return;
  }
  const config = parseServeArgs(args, process.env);
  const keys = config.keysFile ? KeyRing.load(config.keysFile) : null;
  const logger = { level: config.logLevel, transport: undefined };
  if (!keys && config.host !== '127.0.0.1' && config.host !== 'localhost' && config.host !== '::1') {
    process.stderr.write(`loraserve: no --keys file, so binding 127.0.0.1 instead of ${config.host}: without keys anyone could manage adapters\n`);
    config.host = '127.0.0.1';
  }
  const serving = await Serving.create(config, keys);
  const app = await buildApp(serving, { logger });
  if (!keys) app.log.warn('no API keys file: every caller is an admin; listening on loopback only');
  for (const name of config.preload) {
    await serving.adapters.warm(ANONYMOUS_ADMIN, name);
    app.log.info({ adapter: name }, 'preloaded');
  }
  const adapters = serving.adapters.visible(ANONYMOUS_ADMIN).length;
  const quant = serving.engine.quantization;
  const quantized = quant ? { quantize: quant.mode, quantCache: quant.entry.reused ? 'reused' : 'written', quantFile: quant.entry.file } : {};
  app.log.info({ model: serving.baseId, adapters, slots: config.slots, provider: config.provider, ...quantized }, 'model loaded');
  await app.listen({ host: config.host, port: config.port });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    app.log.info({ signal }, 'draining: new requests get 503');
    serving.shuttingDown = true;
    const drained = await Promise.race([serving.engine.scheduler.idle().then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), config.drainTimeoutMs))]);
    if (!drained) app.log.warn('drain timeout: closing with requests still running');
    await app.close();
    await serving.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
