/**
 * Trains byte-level BPE merges on a corpus (the GPT-2 scheme: bytes mapped to printable
 * characters, text split by GPT-2's pre-tokenizer pattern, the most frequent adjacent pair merged
 * until the vocabulary reaches its size). The result is written as tokenizer.json.
 *
 * Every multi-byte character of the corpus (each Hangul syllable, say) first gets the merges that
 * build it into one token, most frequent characters first; frequency merges follow on top. Without
 * that, a small model that has to spell a rare syllable byte by byte can emit a lead byte and a
 * wrong continuation, and the answer decodes to U+FFFD; with it, no answer it learned to give holds
 * a partial character.
 */
import { bytesToUnicode } from '../tokenizer/index.js';

const PRETOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export function trainByteLevelBpe(texts: string[], merges: number): Array<[string, string]> {
  const byteChar = bytesToUnicode();
  const encoder = new TextEncoder();
  const spell = (s: string) => Array.from(encoder.encode(s), (b) => byteChar[b]!);
  const counts = new Map<string, number>();
  const charCounts = new Map<string, number>();
  for (const text of texts) {
    for (const piece of text.match(PRETOKENIZE) ?? []) counts.set(piece, (counts.get(piece) ?? 0) + 1);
    for (const ch of text) if (ch.codePointAt(0)! > 0x7f) charCounts.set(ch, (charCounts.get(ch) ?? 0) + 1);
  }
  const out: Array<[string, string]> = [];
  const known = new Set<string>();
  const chars = [...charCounts].sort((a, b) => b[1] - a[1] || a[0].codePointAt(0)! - b[0].codePointAt(0)!).map(([c]) => c);
  for (const ch of chars) {
    const bytes = spell(ch);
    const needed: Array<[string, string]> = [];
    for (let i = 1; i < bytes.length; i++) {
      const left = bytes.slice(0, i).join('');
      if (!known.has(left + bytes[i])) needed.push([left, bytes[i]!]);
    }
    if (out.length + needed.length > merges) break;
    for (const [a, b] of needed) {
      known.add(a + b);
      out.push([a, b]);
    }
  }
  const whole = new Set(chars.filter((ch) => known.has(spell(ch).join(''))).map((ch) => spell(ch).join('')));
  // Words start from whole characters where a character's merges exist, bytes otherwise.
  const words = [...counts].map(([piece, n]) => ({
    symbols: Array.from(piece).flatMap((ch) => (whole.has(spell(ch).join('')) ? [spell(ch).join('')] : spell(ch))),
    n,
  }));
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
    // A pair spelling a token that exists already is skipped: each merge adds one vocabulary id.
    for (const [k, n] of pairs) {
      if (known.has(k.replace('\u0000', ''))) continue;
      if (n > bestCount || (n === bestCount && best !== '' && k < best)) (best = k), (bestCount = n);
    }
    if (!best) break;
    const [a, b] = best.split('\u0000') as [string, string];
    known.add(a + b);
    out.push([a, b]);
    for (const w of words) {
      const s = w.symbols;
      for (let i = 0; i + 1 < s.length; i++) if (s[i] === a && s[i + 1] === b) s.splice(i, 2, a + b);
    }
  }
  return out;
}
