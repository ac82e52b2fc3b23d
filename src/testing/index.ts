/**
 * Fixtures for benchmarks, drivers and tests, never used by the server: random Hugging Face models and
 * PEFT adapters, the same written as llama.cpp GGUF files so that llama.cpp can run the very same model
 * as a peer, and real servers (in-process, child processes, replicas behind HAProxy) over them.
 */
export { writeRandomModel, type Family, type RandomModelOptions, type TinyModel } from './random-model.js';
export { writeRandomAdapter, type LoraModuleWeights } from './random-adapter.js';
export { writeGguf, gguf, tensorBytes, GGML_TYPE, GGUF_ALIGNMENT, type GgmlType, type GgufTensor, type GgufValue } from './gguf-file.js';
export { quantizeQ8_0, quantizeQ4_0, encodeAs } from './ggml-quants.js';
export { ggufArchitecture, ggufTensorName, permuteRopeRows, type GgufArchitecture } from './gguf-names.js';
export { writeGgufModel, type GgufWeightType, type WrittenGgufModel } from './gguf-model.js';
export { writeGgufLora } from './gguf-lora.js';
export { tempDir } from './temp-dir.js';
export { multipart } from './multipart.js';
export { spawnServer, writeTinyModel, type ChildServer } from './child-server.js';
export { startTestServer, generateOpenApi, type TestServer } from './test-server.js';
export { startCluster, haproxyInstalled, adapterFiles, upload, chat, counterBy, HAPROXY_CFG, type Cluster } from './cluster.js';
