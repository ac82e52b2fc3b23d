export { parsePeftConfig, type PeftLoraConfig } from './peft-config.js';
export { resolveTargets, selectModules, type TargetedModule } from './targets.js';
export { parseAdapter, type ParsedAdapter, type SlotModule, type AdapterSummary } from './adapter.js';
export { SlotTable } from './slot-table.js';
export { writePeftAdapter, peftConfig, type PeftAdapterFiles } from './peft-writer.js';
export { AdapterStore, checkAdapterName, ADAPTER_NAME, CONFIG_FILE, WEIGHTS_FILE, type StoredAdapter, type AdapterFiles } from './adapter-store.js';
export { AdapterCache, type Lease, type Tier, type CacheEvents } from './adapter-cache.js';
export { mergeAdapter } from './merge.js';
