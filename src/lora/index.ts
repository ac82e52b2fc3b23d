export { parsePeftConfig, loraScale, type PeftLoraConfig } from './peft-config.js';
export { resolveTargets, selectModules, type TargetedModule } from './targets.js';
export { parseAdapter, type ParsedAdapter, type SlotModule } from './adapter.js';
export { summarizeAdapterConfig, type AdapterSummary } from './adapter-summary.js';
export { SlotTable, singleSlot, type AdapterMix } from './slot-table.js';
export { writePeftAdapter, peftConfig, type PeftAdapterFiles } from './peft-writer.js';
export { CONFIG_FILE, WEIGHTS_FILE, readAdapterFolder, type AdapterFiles } from './peft-format.js';
export { AdapterStore, checkAdapterName, versionKey, ADAPTER_NAME, type StoredAdapter, type StoreStartup } from './adapter-store.js';
export {
  AdapterCache,
  type Lease,
  type Tier,
  type CacheEvents,
  type CacheOccupancy,
  type CacheSource,
  type CacheSlots,
} from './adapter-cache.js';
export { MixStore, type MixMember, type SavedMix } from './mix-store.js';
export { mergeAdapter, type MergeInput } from './merge.js';
