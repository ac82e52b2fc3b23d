import { writeRandomModel, type RandomModelOptions } from '../testing/index.js';
import { bytesToUnicode } from '../tokenizer/index.js';

/** Model shapes the benchmark builds with random weights (no model hub is reachable). */
export const SHAPES = {
  'gpt2-small': {
    label: 'GPT-2-small shape (12 layers, 768 wide, vocab 50257, 124M params), F32',
    options: { family: 'gpt2', hidden: 768, layers: 12, heads: 12, intermediate: 3072, maxPositions: 1024, vocabSize: 50257 },
    /** GPT-2's q/k/v/o: the fused qkv projection and the attention output projection. */
    targets: ['c_attn', 'attn.c_proj'],
    fanInFanOut: true,
  },
  'qwen2-0.5b': {
    label: 'Qwen2.5-0.5B shape (24 layers, 896 wide, 14/2 heads, vocab 151936, 494M params), BF16 on disk',
    options: {
      family: 'qwen2',
      hidden: 896,
      layers: 24,
      heads: 14,
      kvHeads: 2,
      intermediate: 4864,
      maxPositions: 4096,
      vocabSize: 151936,
      dtype: 'BF16',
    },
    targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
    fanInFanOut: false,
  },
} as const satisfies Record<
  string,
  { label: string; options: Omit<RandomModelOptions, 'seed' | 'merges' | 'std'>; targets: readonly string[]; fanInFanOut: boolean }
>;

export type ShapeName = keyof typeof SHAPES;

const SPECIALS = 3;

/**
 * Enough synthetic merges that every vocabulary id is a real token: all byte pairs first, then
 * pairs extended by one byte.
 */
function syntheticMerges(count: number): Array<[string, string]> {
  const bytes = bytesToUnicode();
  const merges: Array<[string, string]> = [];
  for (let i = 0; merges.length < count; i++) {
    const pair = i % 65536;
    const left = bytes[Math.floor(pair / 256)]! + (i < 65536 ? '' : bytes[pair % 256]!);
    merges.push(i < 65536 ? [left, bytes[pair % 256]!] : [left, bytes[Math.floor(i / 65536) - 1]!]);
  }
  return merges;
}

export function writeShape(dir: string, shape: ShapeName): string {
  const o = SHAPES[shape].options;
  writeRandomModel(dir, { ...o, seed: 1, std: 0.02, merges: syntheticMerges(o.vocabSize - 256 - SPECIALS) });
  return dir;
}
