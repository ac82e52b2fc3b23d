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
