import { ConfigError } from '../errors.js';

/** A numeric flag's value; anything that is not a finite number is refused by name. */
export function numberFlag(raw: string, flag: string): number {
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v)) throw new ConfigError(`--${flag} must be a number, got "${raw}"`, { param: flag });
  return v;
}

/** A flag that counts something (slots, tokens, bytes, milliseconds, a port): a whole number in [min, max]. */
export function countFlag(min: number, max = Number.MAX_SAFE_INTEGER): (raw: string, flag: string) => number {
  return (raw, flag) => {
    const v = numberFlag(raw, flag);
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new ConfigError(
        `--${flag} must be a whole number ${max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`}, got "${raw}"`,
        { param: flag },
      );
    }
    return v;
  };
}
