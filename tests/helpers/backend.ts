import { Engine, type EngineOptions } from '../../src/engine/index.js';

/**
 * The backend the engine-level reference tests run on. `npm test` runs them as they are (CPU, host
 * cache) and again through tests/engine/backends.test.ts with LORASERVE_TEST_BACKEND set to
 * `cpu-device` (the device-cache graph on the CPU provider) and, where a Vulkan adapter exists,
 * `webgpu` — so every parity case holds on every backend without a copy of the cases.
 */
export const BACKENDS = {
  cpu: { provider: 'cpu', kvCache: 'host' },
  'cpu-device': { provider: 'cpu', kvCache: 'device' },
  webgpu: { provider: 'webgpu', kvCache: 'device' },
} as const satisfies Record<string, Pick<EngineOptions, 'provider' | 'kvCache'>>;

export type BackendName = keyof typeof BACKENDS;

export const BACKEND_NAME: BackendName = (() => {
  const name = process.env.LORASERVE_TEST_BACKEND ?? 'cpu';
  if (!(name in BACKENDS)) throw new Error(`LORASERVE_TEST_BACKEND=${name}: expected one of ${Object.keys(BACKENDS).join(', ')}`);
  return name as BackendName;
})();

/** Engine.create on the backend under test (options that name a provider or cache keep theirs). */
export function createEngine(options: EngineOptions): Promise<Engine> {
  return Engine.create({ ...BACKENDS[BACKEND_NAME], ...options });
}
