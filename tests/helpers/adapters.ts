import type { HfModel } from '../../src/model/index.js';
import { parseAdapter, readAdapterFolder, type ParsedAdapter } from '../../src/lora/index.js';
import { tempDir, writeRandomAdapter as writeAdapter } from '../../src/testing/index.js';
import type { RefLora } from './reference.js';

export { tempDir };

export interface TestAdapter {
  dir: string;
  /** What the reference forward applies: module name → A, B, r, scale, trained bias. */
  ref: Map<string, RefLora>;
}

export async function writeRandomAdapter(dir: string, model: HfModel, fields: Record<string, unknown>, seed: number): Promise<TestAdapter> {
  return { dir, ref: await writeAdapter(dir, model, fields, seed) };
}

export function readAdapter(dir: string, model: HfModel, maxRank = 16): ParsedAdapter {
  const { config, weights } = readAdapterFolder(dir);
  return parseAdapter(config, weights, model, maxRank);
}
