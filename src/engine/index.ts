export { Engine, ENGINE_DEFAULTS, type EngineOptions, type GenerateRequest } from './engine.js';
export { Generation, type GenerationResult, type FinishReason, type Delta } from './generation.js';
export type { TokenLogprob } from './logprobs.js';
export { DEFAULT_SAMPLING, type SamplingParams } from './sampler.js';
// OnnxSession: the single-op MatMulNBits benchmark runs its own graphs.
export { availableProviders, EXECUTION_PROVIDERS, OnnxSession, type ExecutionProvider } from './onnx-backend.js';
export type { SchedulerLimits } from './scheduler.js';
export { DEFAULT_TENANT, type TenantService } from './fair-queue.js';
export type { ForwardInput, ForwardOutput } from './scheduler.js';
// The benchmark drives decode steps by hand with the scheduler's own input builder.
export type { KvRows } from './kv-cache.js';
export { decodeInputs, prefillInputs } from './step-inputs.js';
export { BASE_PREFIX_KEY, PREFIX_BLOCK, type PrefixCache } from './prefix-cache.js';
