/**
 * What drives the product from outside: the benchmark and its llama.cpp peer, the replica and
 * MatMulNBits benchmarks, the fuzzer, the soak, and the demo's evaluation. Entry points live in
 * scripts/ (and `loraserve bench`); nothing here imports tests/.
 */
export { runBench, type BenchOptions } from './run-bench.js';
export { SHAPES, type ShapeName } from './shapes.js';
/** The llama.cpp peer (node-llama-cpp, a dev dependency, loaded on demand). */
export {
  runLlamaPeer,
  llamaGreedyTokens,
  type LlamaPeerOptions,
  type LlamaPeerResult,
  type PeerWorkload,
  type LlamaGreedyOptions,
} from './llama-peer.js';
export { peerAgreement, type AgreementOptions, type AgreementReport, type AgreementCase } from './peer-agreement.js';
export { benchReplicas, type ReplicasOptions } from './replicas.js';
export { benchMatMulNBits } from './matmul-nbits.js';
export { runFuzz, type FuzzReport, type Finding } from './fuzz/run-fuzz.js';
export { runSoak, type SoakOptions } from './soak.js';
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
export { benchFineTune, type FineTuneBenchOptions, type FineTuneBenchResult } from './finetune.js';
