import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeRandomModel } from '../../src/testing/index.js';
import { trainByteLevelBpe } from '../../src/train/index.js';
import { CHATML_SPECIALS, Tokenizer } from '../../src/tokenizer/index.js';
import { tempDir } from '../helpers/adapters.js';

const TEXTS = [
  '안녕하세요! 무엇을 도와드릴까요?',
  '고객님, 구매 후 14일 이내 미사용 제품은 전액 환불됩니다.',
  '의학 정보: 충분한 수분 섭취와 규칙적인 수면이 중요합니다.',
  'Hello! How can I help you today? Hello hello hello.',
  '법률 정보: 저작권은 저작자 사후 70년까지 보호됩니다 · 20-20-20 규칙 ✓ 😀',
];

async function tokenizerFor(merges: Array<[string, string]>): Promise<Tokenizer> {
  const dir = join(tempDir(), 'model');
  writeRandomModel(dir, { family: 'llama', seed: 3, vocabSize: 256 + merges.length + CHATML_SPECIALS.length, merges });
  return Tokenizer.load(dir);
}

describe('byte-level BPE training', () => {
  it('every multi-byte character of the corpus is one token, and frequency merges build on them', async () => {
    // Asked for more than the corpus supports: merging stops once no pair occurs twice.
    const merges = trainByteLevelBpe(TEXTS, 300);
    assert.ok(merges.length < 300);
    assert.equal(new Set(merges.map(([a, b]) => a + b)).size, merges.length, 'each merge adds a distinct token');
    const tokenizer = await tokenizerFor(merges);
    const chars = new Set([...TEXTS.join('')].filter((c) => c.codePointAt(0)! > 0x7f));
    assert.ok(chars.size > 60 && merges.length > chars.size + 10);
    for (const ch of chars) assert.equal(tokenizer.encode(ch).length, 1, `${ch} is one token`);
    for (const text of TEXTS) {
      const ids = tokenizer.encode(text);
      assert.equal(tokenizer.decode(ids), text);
      // Whole characters only: no token decodes to a partial UTF-8 sequence.
      for (const id of ids) assert.ok(!tokenizer.decode([id]).includes('\uFFFD'), `token ${id} of "${text}"`);
    }
    assert.equal(tokenizer.encode(' hello').length, 1, 'a word the corpus repeats is merged whole');
  });

  it('with too few merges for every character, the most frequent characters come first and nothing breaks', async () => {
    const merges = trainByteLevelBpe(TEXTS, 20);
    assert.equal(merges.length, 20);
    const tokenizer = await tokenizerFor(merges);
    for (const text of TEXTS) assert.equal(tokenizer.decode(tokenizer.encode(text)), text);
    const counts = new Map<string, number>();
    for (const ch of TEXTS.join('')) if (ch.codePointAt(0)! > 0x7f) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    const top = [...counts].sort((a, b) => b[1] - a[1])[0]![0];
    assert.equal(tokenizer.encode(top).length, 1, `${top}, the most frequent character, is whole`);
  });
});
