/**
 * Trains byte-level BPE merges on a corpus (the GPT-2 scheme: bytes mapped to printable
 * characters, text split by GPT-2's pre-tokenizer pattern, the most frequent adjacent pair merged
 * until the vocabulary reaches its size). The result is written as tokenizer.json.
 */
import { bytesToUnicode } from '../tokenizer/index.js';

const PRETOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export function trainByteLevelBpe(texts: string[], merges: number): Array<[string, string]> {
  const byteChar = bytesToUnicode();
  const encoder = new TextEncoder();
  const counts = new Map<string, number>();
  for (const text of texts) {
    for (const piece of text.match(PRETOKENIZE) ?? []) {
      const word = Array.from(encoder.encode(piece), (b) => byteChar[b]!).join('\u0000');
      counts.set(word, (counts.get(word) ?? 0) + 1);
    }
  }
  const words = [...counts].map(([w, n]) => ({ symbols: w.split('\u0000'), n }));
  const out: Array<[string, string]> = [];
  while (out.length < merges) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]}\u0000${symbols[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + n);
      }
    }
    let best = '';
    let bestCount = 1;
    // Ties break on the pair itself so the merges are the same on every run.
    for (const [k, n] of pairs) if (n > bestCount || (n === bestCount && best !== '' && k < best)) (best = k), (bestCount = n);
    if (!best) break;
    const [a, b] = best.split('\u0000') as [string, string];
    out.push([a, b]);
    for (const w of words) {
      const s = w.symbols;
      for (let i = 0; i + 1 < s.length; i++) if (s[i] === a && s[i + 1] === b) s.splice(i, 2, a + b);
    }
  }
  return out;
}
