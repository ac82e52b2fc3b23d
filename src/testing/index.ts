/**
 * Fixtures for benchmarks and tests, never used by the server: random Hugging Face models and PEFT
 * adapters, and the same written as llama.cpp GGUF files so that llama.cpp can run the very same
 * model as a peer.
 */
export { writeRandomModel, type Family, type RandomModelOptions, type TinyModel } from './random-model.js';
export { writeRandomAdapter, type LoraModuleWeights } from './random-adapter.js';
export { writeGguf, gguf, tensorBytes, GGML_TYPE, GGUF_ALIGNMENT, type GgmlType, type GgufTensor, type GgufValue } from './gguf-file.js';
export { quantizeQ8_0, quantizeQ4_0, encodeAs } from './ggml-quants.js';
export { ggufArchitecture, ggufTensorName, permuteRopeRows, type GgufArchitecture } from './gguf-names.js';
export { writeGgufModel, type GgufWeightType, type WrittenGgufModel } from './gguf-model.js';
export { writeGgufLora } from './gguf-lora.js';
export {
  evaluateDemo,
  domainQuestions,
  generalPrompts,
  DEMO_DOMAINS,
  DEMO_BASE,
  type DemoDomain,
  type DemoEvalReport,
  type DomainQuestion,
  type Score,
} from './demo-eval.js';
