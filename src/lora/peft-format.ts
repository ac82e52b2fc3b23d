/**
 * Names PEFT's `save_pretrained` fixes: the two files of an adapter folder and the prefix of every
 * tensor key in its weights file.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const CONFIG_FILE = 'adapter_config.json';
export const WEIGHTS_FILE = 'adapter_model.safetensors';

/** Keys look like `base_model.model.<module path>.lora_A.weight`. */
export const KEY_PREFIX = 'base_model.model.';

/** An adapter's two files, as read from a folder or an upload. */
export interface AdapterFiles {
  config: string;
  weights: Uint8Array;
}

/** Reads an adapter folder's two files (CLI tools, scripts, tests; the server reads through its store). */
export function readAdapterFolder(dir: string): AdapterFiles {
  return { config: readFileSync(join(dir, CONFIG_FILE), 'utf8'), weights: readFileSync(join(dir, WEIGHTS_FILE)) };
}
