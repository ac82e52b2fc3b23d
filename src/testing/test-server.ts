import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildApp, DEFAULTS, KeyRing, Serving, type App, type ServerConfig } from '../server/index.js';
import { writeRandomModel, type RandomModelOptions, type TinyModel } from './random-model.js';
import { tempDir } from './temp-dir.js';

/** A real server in-process (app.inject or sockets), for tests and for generating the OpenAPI document. */
export interface TestServer {
  app: App;
  serving: Serving;
  root: string;
  modelDir: string;
  adaptersDir: string;
  /** The random base model's weights (for the reference forward pass). */
  tiny: TinyModel;
  close(): Promise<void>;
}

/** A real server over a tiny random model in its own temp folder (app.inject, or listen for sockets). */
export async function startTestServer(
  overrides: Partial<ServerConfig> = {},
  opts: { model?: Partial<RandomModelOptions>; keys?: unknown; logLines?: string[]; generationConfig?: Record<string, unknown> } = {},
): Promise<TestServer> {
  const root = tempDir('loraserve-server-');
  const modelDir = join(root, 'tiny-llama');
  const tiny = writeRandomModel(modelDir, { family: 'llama', seed: 77, ...opts.model });
  if (opts.generationConfig) {
    const file = join(modelDir, 'generation_config.json');
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), ...opts.generationConfig }));
  }
  const adaptersDir = join(root, 'adapters');
  mkdirSync(adaptersDir, { recursive: true });
  let keysFile: string | null = null;
  if (opts.keys) {
    keysFile = join(root, 'keys.json');
    writeFileSync(keysFile, JSON.stringify(opts.keys));
  }
  const config: ServerConfig = {
    ...DEFAULTS,
    modelDir,
    adaptersDir,
    slots: 2,
    maxRank: 16,
    hostCacheBytes: 64 * 1024 * 1024,
    keysFile,
    maxTokens: 64,
    ...overrides,
  };
  const serving = await Serving.create(config, config.keysFile ? KeyRing.load(config.keysFile) : null);
  const logger = opts.logLines ? { level: 'info', stream: { write: (line: string) => opts.logLines!.push(line) } } : undefined;
  const app = await buildApp(serving, { logger });
  await app.ready();
  return {
    app,
    serving,
    root,
    modelDir,
    adaptersDir,
    tiny,
    async close() {
      await app.close();
      await serving.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** The OpenAPI document the routes produce (independent of which model is loaded). */
export async function generateOpenApi(): Promise<unknown> {
  const server = await startTestServer();
  try {
    return server.app.swagger();
  } finally {
    await server.close();
  }
}
