import { parseArgs } from 'node:util';
import { ConfigError } from '../errors.js';
import { countFlag } from './flags.js';
import {
  ANONYMOUS_ADMIN,
  buildApp,
  DEFAULTS,
  drain,
  isLoopback,
  KeyRing,
  listenMetrics,
  Serving,
  type ServerConfig,
} from '../server/index.js';
import type { ExecutionProvider } from '../engine/index.js';
import { QUANTIZE_MODES } from '../model/index.js';

const text = (raw: string) => raw;
const list = (raw: string) =>
  raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** Each flag, the config field it sets, and how to read it; its variable is LORASERVE_ and its name (envOf). */
const FLAGS = {
  model: { key: 'modelDir', help: 'Hugging Face model folder', parse: text },
  adapters: { key: 'adaptersDir', help: 'adapter store folder', parse: text },
  host: { key: 'host', help: 'bind address', parse: text },
  port: { key: 'port', help: 'port (0: any free port)', parse: countFlag(0, 65535) },
  provider: { key: 'provider', help: 'cpu | cuda | webgpu', parse: text },
  slots: { key: 'slots', help: 'adapter slots on the device', parse: countFlag(0) },
  'max-rank': { key: 'maxRank', help: 'largest LoRA rank served', parse: countFlag(1) },
  'lora-modules': {
    key: 'loraModules',
    help: 'all-linear, or comma-separated module names with LoRA slots',
    parse: (v: string) => (v === 'all-linear' ? v : list(v)),
  },
  'host-cache-bytes': { key: 'hostCacheBytes', help: 'host-memory bound of parsed adapters', parse: countFlag(1) },
  'prefix-cache-bytes': {
    key: 'prefixCacheBytes',
    help: 'memory bound of cached prompt prefixes, on the KV cache device (0 or --no-prefix-cache: none)',
    parse: countFlag(0),
  },
  'max-batch': { key: 'maxBatch', help: 'rows per forward pass', parse: countFlag(1) },
  'max-batch-tokens': { key: 'maxBatchTokens', help: 'padded prompt tokens per prefill step', parse: countFlag(1) },
  'prefill-chunk': {
    key: 'prefillChunk',
    help: 'most prompt tokens of one request per step (longer prompts alternate chunks with decode steps)',
    parse: countFlag(1),
  },
  threads: { key: 'threads', help: 'ONNX Runtime intra-op threads (0 = all cores)', parse: countFlag(0) },
  quantize: {
    key: 'quantize',
    help: 'int8 | int4: weight-only quantization of the base model (none = float32)',
    parse: (v: string) => (v === 'none' ? null : v),
  },
  'quant-cache-dir': {
    key: 'quantCacheDir',
    help: 'where quantized weights are cached (none: MODEL/.loraserve-cache)',
    parse: text,
  },
  keys: { key: 'keysFile', help: 'API keys file (JSON)', parse: text },
  'lora-root': { key: 'loraRoot', help: 'root for vLLM-style load_lora_adapter paths', parse: text },
  preload: { key: 'preload', help: 'comma-separated adapters to warm at start', parse: list },
  'max-tokens': { key: 'maxTokens', help: 'largest max_tokens a request may ask', parse: countFlag(1) },
  'max-n': { key: 'maxChoices', help: 'largest n (choices per prompt) a request may ask', parse: countFlag(1) },
  'max-prompt-tokens': { key: 'maxPromptTokens', help: 'longest prompt accepted', parse: countFlag(1) },
  'max-queue': { key: 'maxQueue', help: 'waiting requests before 429', parse: countFlag(0) },
  'max-mix-adapters': { key: 'maxMixAdapters', help: 'most adapters in one weighted mix', parse: countFlag(1) },
  'request-timeout-ms': { key: 'requestTimeoutMs', help: 'per-request time limit', parse: countFlag(1) },
  'drain-timeout-ms': {
    key: 'drainTimeoutMs',
    help: 'how long SIGTERM waits for running requests before cancelling them',
    parse: countFlag(0),
  },
  'upload-bytes': { key: 'uploadBytes', help: 'largest adapter upload', parse: countFlag(1) },
  'generation-config': {
    key: 'generationConfig',
    help: "auto (the model's generation_config.json gives defaults for unset sampling fields) | none",
    parse: (v: string) => {
      if (v !== 'auto' && v !== 'none') throw new ConfigError(`--generation-config must be auto or none, not "${v}"`);
      return v;
    },
  },
  'log-level': { key: 'logLevel', help: 'pino log level', parse: text },
  'metrics-key': { key: 'metricsKey', help: 'bearer key /metrics requires (admin keys work too)', parse: text },
  'metrics-port': {
    key: 'metricsPort',
    help: 'serve /metrics on its own port instead of the API port',
    parse: countFlag(0, 65535),
  },
  'metrics-host': { key: 'metricsHost', help: 'bind address of the metrics port', parse: text },
  'finetune-dir': { key: 'finetuneDir', help: 'training files and fine-tuning jobs (none: ADAPTERS/.finetune)', parse: text },
  'training-threads': { key: 'trainingThreads', help: "threads of each fine-tuning job's trainer", parse: countFlag(1) },
  'max-training-jobs': { key: 'maxTrainingJobs', help: 'fine-tuning jobs training at once (the rest queue)', parse: countFlag(1) },
  'training-file-bytes': { key: 'trainingFileBytes', help: 'largest training file /v1/files accepts', parse: countFlag(1) },
  'training-file-lines': { key: 'trainingFileLines', help: 'most examples in one training file', parse: countFlag(1) },
} as const satisfies Record<string, { key: keyof ServerConfig; help: string; parse: (raw: string, flag: string) => unknown }>;

const envOf = (flag: string) => `LORASERVE_${flag.toUpperCase().replaceAll('-', '_')}`;

/** The one switch (a flag without a value); its variable takes 1/true or 0/false. */
const NO_PREFIX_CACHE = 'no-prefix-cache';

function switchOn(raw: string | undefined, flag: string): boolean {
  if (raw === undefined || raw === '' || raw === '0' || raw === 'false') return false;
  if (raw === '1' || raw === 'true') return true;
  throw new ConfigError(`${envOf(flag)} must be 1, true, 0 or false, not "${raw}"`, { param: flag });
}

export const DEMO_MODEL = 'models/loraserve-demo';

/** What a flag is when it is not given, as --help shows it. */
const DEFAULT_CONFIG: Record<string, unknown> = { ...DEFAULTS, modelDir: DEMO_MODEL };

function shownDefault(value: unknown): string {
  if (value === null || value === undefined) return 'none';
  return Array.isArray(value) ? value.join(',') || 'none' : String(value);
}

export function serveUsage(): string {
  const lines = Object.entries(FLAGS).map(
    ([flag, f]) => `  --${flag.padEnd(20)} ${f.help} (default ${shownDefault(DEFAULT_CONFIG[f.key])}; ${envOf(flag)})`,
  );
  lines.push(
    `  --${NO_PREFIX_CACHE.padEnd(20)} read every prompt whole, as --prefix-cache-bytes 0 (default off; ${envOf(NO_PREFIX_CACHE)})`,
  );
  return `loraserve serve [options]\n\n${lines.join('\n')}`;
}

export function parseServeArgs(args: string[], env: NodeJS.ProcessEnv): ServerConfig {
  const { values } = parseArgs({
    args,
    options: {
      ...Object.fromEntries(Object.keys(FLAGS).map((k) => [k, { type: 'string' as const }])),
      [NO_PREFIX_CACHE]: { type: 'boolean' as const },
    },
    strict: true,
  });
  const config: Record<string, unknown> = { ...DEFAULT_CONFIG };
  for (const [flag, spec] of Object.entries(FLAGS)) {
    const raw = (values as Record<string, string | undefined>)[flag] ?? env[envOf(flag)];
    if (raw === undefined || raw === '') continue;
    config[spec.key] = spec.parse(raw, flag);
  }
  if (values[NO_PREFIX_CACHE] || switchOn(env[envOf(NO_PREFIX_CACHE)], NO_PREFIX_CACHE)) config.prefixCacheBytes = 0;
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
  if (!keys && !isLoopback(config.host)) {
    process.stderr.write(
      `loraserve: no --keys file, so binding 127.0.0.1 instead of ${config.host}: without keys anyone could manage adapters\n`,
    );
    config.host = '127.0.0.1';
  }
  const serving = await Serving.create(config, keys);
  const app = await buildApp(serving, { logger });
  if (!keys) app.log.warn('no API keys file: every caller is an admin; listening on loopback only');
  else if (!isLoopback(config.host) && !config.metricsKey && config.metricsPort === null) {
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
