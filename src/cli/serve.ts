import { parseArgs } from 'node:util';
import { ConfigError } from '../errors.js';
import { countFlag } from './flags.js';
import { ANONYMOUS_ADMIN, buildApp, DEFAULTS, drain, KeyRing, listenMetrics, Serving, type ServerConfig } from '../server/index.js';
import type { ExecutionProvider } from '../engine/index.js';
import { QUANTIZE_MODES } from '../model/index.js';

const text = (raw: string) => raw;
const list = (raw: string) =>
  raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** Each flag, its LORASERVE_* variable, and how to read it. */
const FLAGS = {
  model: { env: 'LORASERVE_MODEL', help: 'Hugging Face model folder', parse: text },
  adapters: { env: 'LORASERVE_ADAPTERS', help: 'adapter store folder', parse: text },
  host: { env: 'LORASERVE_HOST', help: 'bind address', parse: text },
  port: { env: 'LORASERVE_PORT', help: 'port (0: any free port)', parse: countFlag(0, 65535) },
  provider: { env: 'LORASERVE_PROVIDER', help: 'cpu | cuda | webgpu', parse: text },
  slots: { env: 'LORASERVE_SLOTS', help: 'adapter slots on the device', parse: countFlag(0) },
  'max-rank': { env: 'LORASERVE_MAX_RANK', help: 'largest LoRA rank served', parse: countFlag(1) },
  'lora-modules': {
    env: 'LORASERVE_LORA_MODULES',
    help: 'all-linear, or comma-separated module names with LoRA slots',
    parse: (v: string) => (v === 'all-linear' ? v : list(v)),
  },
  'host-cache-bytes': { env: 'LORASERVE_HOST_CACHE_BYTES', help: 'host-memory bound of parsed adapters', parse: countFlag(1) },
  'max-batch': { env: 'LORASERVE_MAX_BATCH', help: 'rows per forward pass', parse: countFlag(1) },
  'max-batch-tokens': { env: 'LORASERVE_MAX_BATCH_TOKENS', help: 'padded prompt tokens per prefill step', parse: countFlag(1) },
  'prefill-chunk': {
    env: 'LORASERVE_PREFILL_CHUNK',
    help: 'most prompt tokens of one request per step (longer prompts alternate chunks with decode steps)',
    parse: countFlag(1),
  },
  threads: { env: 'LORASERVE_THREADS', help: 'ONNX Runtime intra-op threads (0 = all cores)', parse: countFlag(0) },
  quantize: {
    env: 'LORASERVE_QUANTIZE',
    help: 'int8 | int4: weight-only quantization of the base model (none = float32)',
    parse: (v: string) => (v === 'none' ? null : v),
  },
  'quant-cache-dir': {
    env: 'LORASERVE_QUANT_CACHE_DIR',
    help: 'where quantized weights are cached (default: MODEL/.loraserve-cache)',
    parse: text,
  },
  keys: { env: 'LORASERVE_KEYS', help: 'API keys file (JSON)', parse: text },
  'lora-root': { env: 'LORASERVE_LORA_ROOT', help: 'root for vLLM-style load_lora_adapter paths', parse: text },
  preload: { env: 'LORASERVE_PRELOAD', help: 'comma-separated adapters to warm at start', parse: list },
  'max-tokens': { env: 'LORASERVE_MAX_TOKENS', help: 'largest max_tokens a request may ask', parse: countFlag(1) },
  'max-n': { env: 'LORASERVE_MAX_N', help: 'largest n (choices per prompt) a request may ask', parse: countFlag(1) },
  'max-prompt-tokens': { env: 'LORASERVE_MAX_PROMPT_TOKENS', help: 'longest prompt accepted', parse: countFlag(1) },
  'max-queue': { env: 'LORASERVE_MAX_QUEUE', help: 'waiting requests before 429', parse: countFlag(0) },
  'max-mix-adapters': { env: 'LORASERVE_MAX_MIX_ADAPTERS', help: 'most adapters in one weighted mix', parse: countFlag(1) },
  'request-timeout-ms': { env: 'LORASERVE_REQUEST_TIMEOUT_MS', help: 'per-request time limit', parse: countFlag(1) },
  'drain-timeout-ms': {
    env: 'LORASERVE_DRAIN_TIMEOUT_MS',
    help: 'how long SIGTERM waits for running requests before cancelling them',
    parse: countFlag(0),
  },
  'upload-bytes': { env: 'LORASERVE_UPLOAD_BYTES', help: 'largest adapter upload', parse: countFlag(1) },
  'generation-config': {
    env: 'LORASERVE_GENERATION_CONFIG',
    help: "auto (the model's generation_config.json gives defaults for unset sampling fields) | none",
    parse: (v: string) => {
      if (v !== 'auto' && v !== 'none') throw new ConfigError(`--generation-config must be auto or none, not "${v}"`);
      return v;
    },
  },
  'log-level': { env: 'LORASERVE_LOG_LEVEL', help: 'pino log level', parse: text },
  'metrics-key': { env: 'LORASERVE_METRICS_KEY', help: 'bearer key /metrics requires (admin keys work too)', parse: text },
  'metrics-port': {
    env: 'LORASERVE_METRICS_PORT',
    help: 'serve /metrics on its own port instead of the API port',
    parse: countFlag(0, 65535),
  },
  'metrics-host': { env: 'LORASERVE_METRICS_HOST', help: 'bind address of the metrics port', parse: text },
} as const;

const KEY_OF: Record<keyof typeof FLAGS, keyof ServerConfig> = {
  model: 'modelDir',
  adapters: 'adaptersDir',
  host: 'host',
  port: 'port',
  provider: 'provider',
  slots: 'slots',
  'max-rank': 'maxRank',
  'lora-modules': 'loraModules',
  'host-cache-bytes': 'hostCacheBytes',
  'max-batch': 'maxBatch',
  'max-batch-tokens': 'maxBatchTokens',
  'prefill-chunk': 'prefillChunk',
  threads: 'threads',
  quantize: 'quantize',
  'quant-cache-dir': 'quantCacheDir',
  keys: 'keysFile',
  'lora-root': 'loraRoot',
  preload: 'preload',
  'max-tokens': 'maxTokens',
  'max-n': 'maxChoices',
  'max-prompt-tokens': 'maxPromptTokens',
  'max-queue': 'maxQueue',
  'max-mix-adapters': 'maxMixAdapters',
  'request-timeout-ms': 'requestTimeoutMs',
  'drain-timeout-ms': 'drainTimeoutMs',
  'upload-bytes': 'uploadBytes',
  'log-level': 'logLevel',
  'generation-config': 'generationConfig',
  'metrics-key': 'metricsKey',
  'metrics-port': 'metricsPort',
  'metrics-host': 'metricsHost',
};

export const DEMO_MODEL = 'models/loraserve-demo';

export function serveUsage(): string {
  const lines = Object.entries(FLAGS).map(([flag, f]) => `  --${flag.padEnd(20)} ${f.help} (${f.env})`);
  return `loraserve serve [options]\n\n${lines.join('\n')}\n\nDefaults: model ${DEMO_MODEL}, adapters ./adapters, 127.0.0.1:8000.`;
}

export function parseServeArgs(args: string[], env: NodeJS.ProcessEnv): ServerConfig {
  const { values } = parseArgs({
    args,
    options: Object.fromEntries(Object.keys(FLAGS).map((k) => [k, { type: 'string' as const }])),
    strict: true,
  });
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
  if (typeof config.metricsKey === 'string' && config.metricsKey.length < 8)
    throw new ConfigError('--metrics-key must be at least 8 characters', { param: 'metrics-key' });
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
    process.stderr.write(
      `loraserve: no --keys file, so binding 127.0.0.1 instead of ${config.host}: without keys anyone could manage adapters\n`,
    );
    config.host = '127.0.0.1';
  }
  const serving = await Serving.create(config, keys);
  const app = await buildApp(serving, { logger });
  if (!keys) app.log.warn('no API keys file: every caller is an admin; listening on loopback only');
  else if (!['127.0.0.1', 'localhost', '::1'].includes(config.host) && !config.metricsKey && config.metricsPort === null) {
    app.log.warn(
      "/metrics names every adapter and needs no key: set --metrics-key or --metrics-port so tenants cannot list each other's adapters",
    );
  }
  const { removed, restored, skipped } = serving.adapters.storeStartup();
  if (removed.length || restored.length) app.log.warn({ removed, restored }, 'adapter store: finished writes a crash interrupted');
  for (const s of skipped) app.log.error({ adapter: s.name, reason: s.reason }, 'adapter store: folder skipped');
  for (const name of config.preload) {
    await serving.adapters.warm(ANONYMOUS_ADMIN, name);
    app.log.info({ adapter: name }, 'preloaded');
  }
  const adapters = (await serving.adapters.visible(ANONYMOUS_ADMIN)).length;
  const quant = serving.engine.quantization;
  const quantized = quant
    ? { quantize: quant.mode, quantCache: quant.entry.reused ? 'reused' : 'written', quantFile: quant.entry.file }
    : {};
  app.log.info({ model: serving.baseId, adapters, slots: config.slots, provider: config.provider, ...quantized }, 'model loaded');
  await app.listen({ host: config.host, port: config.port });
  const metrics = config.metricsPort === null ? null : await listenMetrics(serving, config.metricsHost, config.metricsPort);
  if (metrics) app.log.info({ url: metrics.url }, 'metrics listening');

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    app.log.info({ signal }, 'shutting down');
    await drain(serving, config.drainTimeoutMs, app.log);
    await metrics?.close();
    await app.close();
    await serving.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
