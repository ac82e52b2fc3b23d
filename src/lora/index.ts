export { parsePeftConfig, type PeftLoraConfig } from './peft-config.js';
export { resolveTargets, selectModules, type TargetedModule } from './targets.js';
export { parseAdapter, type ParsedAdapter, type SlotModule, type AdapterSummary } from './adapter.js';
export { SlotTable } from './slot-table.js';
export { writePeftAdapter, peftConfig, type PeftAdapterFiles } from './peft-writer.js';
export { writeRandomAdapter, type LoraModuleWeights } from './random-adapter.js';
