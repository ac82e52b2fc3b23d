/** The llama.cpp peer of `loraserve bench` (node-llama-cpp, a dev dependency, loaded on demand). */
export { runLlamaPeer, llamaGreedyTokens, type LlamaPeerOptions, type LlamaPeerResult, type PeerWorkload, type LlamaGreedyOptions } from './llama-peer.js';
export { peerAgreement, type AgreementOptions, type AgreementReport, type AgreementCase } from './peer-agreement.js';
