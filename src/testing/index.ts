export { writeRandomModel, type Family, type RandomModelOptions, type TinyModel } from './random-model.js';
export { writeRandomAdapter, type LoraModuleWeights } from './random-adapter.js';
