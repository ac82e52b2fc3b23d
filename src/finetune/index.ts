export { FineTuning } from './fine-tuning.js';
export {
  FINE_TUNED_PREFIX,
  page,
  type Job,
  type JobEvent,
  type Checkpoint,
  type CreateJob,
  type FineTuneHost,
  type JobLimits,
  type Page,
} from './jobs.js';
export type { StoredFile } from './file-store.js';
export { LORA_DEFAULTS } from './hyperparameters.js';
