export { train, TRAIN_DEFAULTS, type TrainOptions, type TrainResult } from './trainer.js';
export { TfCausalLM } from './tf-model.js';
export { initTf } from './tf-backend.js';
export { loadDataset, parseLine, encodeConversation, type Example, type TrainingRow } from './dataset.js';
export { trainByteLevelBpe } from './bpe.js';
