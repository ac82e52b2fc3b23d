import { ConfigError } from '../errors.js';

/** A numeric flag's value; anything that is not a finite number is refused by name. */
export function numberFlag(raw: string, flag: string): number {
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v)) throw new ConfigError(`--${flag} must be a number, got "${raw}"`, { param: flag });
  return v;
}
