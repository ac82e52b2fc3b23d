/**
 * A job's training settings: OpenAI's three supervised hyperparameters (each a number or "auto")
 * and loraserve's LoRA extension, resolved once the training file's size is known.
 */
import { InvalidRequestError } from '../errors.js';
import type { LinearModule } from '../model/index.js';
import { selectModules } from '../lora/index.js';
import { TRAIN_DEFAULTS } from '../train/index.js';

export type Auto<T> = T | 'auto';

export interface RequestedHyperparameters {
  n_epochs?: Auto<number>;
  batch_size?: Auto<number>;
  learning_rate_multiplier?: Auto<number>;
}

export interface Hyperparameters {
  n_epochs: number;
  batch_size: number;
  learning_rate_multiplier: number;
}

export interface LoraSettings {
  r: number;
  lora_alpha: number;
  target_modules: string[] | 'all-linear';
  lora_dropout: number;
}

/**
 * The learning rate a multiplier of 1 means: the seed tutorial's 2e-4. "auto" is 10 (2e-3): the
 * small models this server trains on a CPU learn a few facts in minutes at that rate (the demo's
 * adapters were trained at 7e-3).
 */
export const BASE_LEARNING_RATE = TRAIN_DEFAULTS.learningRate;
const AUTO_LR_MULTIPLIER = 10;

/** The seed tutorial's LoRA settings (r 8, alpha 16, dropout 0.05, q_proj and v_proj). */
export const LORA_DEFAULTS: LoraSettings = {
  r: TRAIN_DEFAULTS.r,
  lora_alpha: TRAIN_DEFAULTS.alpha,
  target_modules: TRAIN_DEFAULTS.targetModules,
  lora_dropout: TRAIN_DEFAULTS.dropout,
};

/**
 * OpenAI's documented "auto" rules for the epoch count (aim for at least 100 and at most 25,000
 * examples seen, 3 epochs in between, at most 25); batch size about 0.2% of the examples, at most
 * 8 here (a CPU step grows with the batch).
 */
export function resolveHyperparameters(requested: RequestedHyperparameters, examples: number): Hyperparameters {
  const pick = (v: Auto<number> | undefined, auto: number) => (v === undefined || v === 'auto' ? auto : v);
  const autoEpochs =
    examples * 3 < 100 ? Math.min(25, Math.ceil(100 / examples)) : examples * 3 > 25_000 ? Math.max(1, Math.floor(25_000 / examples)) : 3;
  return {
    n_epochs: pick(requested.n_epochs, autoEpochs),
    batch_size: Math.min(pick(requested.batch_size, Math.min(8, Math.max(1, Math.ceil(examples * 0.002)))), examples),
    learning_rate_multiplier: pick(requested.learning_rate_multiplier, AUTO_LR_MULTIPLIER),
  };
}

/**
 * The LoRA settings with the tutorial's defaults filled in. Refused before any job exists: a rank
 * above what the server serves, and target modules that match none of the layers the server gives
 * LoRA slots (`servable`), whose adapter could never be served.
 */
export function resolveLora(
  requested: Partial<LoraSettings> | undefined,
  maxRank: number,
  servable: readonly LinearModule[],
): LoraSettings {
  const lora = { ...LORA_DEFAULTS, ...requested };
  if (lora.r > maxRank)
    throw new InvalidRequestError(`lora.r is ${lora.r}; this server serves adapters up to rank ${maxRank} (--max-rank)`, {
      param: 'lora.r',
    });
  if (Array.isArray(lora.target_modules) && lora.target_modules.length === 0)
    throw new InvalidRequestError('lora.target_modules names no module', { param: 'lora.target_modules' });
  if (selectModules([...servable], lora.target_modules).length === 0)
    throw new InvalidRequestError(
      `lora.target_modules ${JSON.stringify(lora.target_modules)} match none of the layers this server serves LoRA on (${[...new Set(servable.map((m) => m.name.split('.').at(-1)))].join(', ')})`,
      { param: 'lora.target_modules' },
    );
  return lora;
}
