import { UnsupportedArchitectureError } from '../errors.js';
import type { Architecture } from './architecture.js';
import { gpt2 } from './architectures/gpt2.js';
import { llama } from './architectures/llama.js';

const ARCHITECTURES: readonly Architecture[] = [gpt2, llama];

export function architectureFor(config: Record<string, unknown>): Architecture {
  const names = config.architectures;
  const name = Array.isArray(names) ? String(names[0]) : undefined;
  const arch = ARCHITECTURES.find((a) => name !== undefined && a.hfArchitectures.includes(name));
  if (!arch) {
    const known = ARCHITECTURES.flatMap((a) => a.hfArchitectures).join(', ');
    throw new UnsupportedArchitectureError(`config.json architectures ${JSON.stringify(names)} is not supported; supported: ${known}`);
  }
  return arch;
}
