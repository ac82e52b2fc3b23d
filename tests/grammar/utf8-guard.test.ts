import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Utf8Guard } from '../../src/grammar/utf8-guard.js';

const TOKENS = [
  [0x61], // 0: "a"
  [0xe0], // 1: lead of a 3-byte character from U+0800
  [0x80], // 2: continuation, low
  [0xa0], // 3: continuation, high
  [0xa0, 0x80], // 4: finishes an E0 character
  [0xc0, 0x80], // 5: overlong NUL
  [0xed, 0xa0, 0x80], // 6: a surrogate
  [0xf4, 0x90, 0x80, 0x80], // 7: past U+10FFFF
  [0xea, 0xb0, 0x80], // 8: "가"
  [], // 9: a special token
  [0xff], // 10: never in UTF-8
].map((b) => Uint8Array.from(b));

const allowed = (mask: Int32Array) => TOKENS.map((_, t) => t).filter((t) => (mask[t >> 5]! >>> (t & 31)) & 1);

describe('the UTF-8 guard on a grammar mask', () => {
  const guard = new Utf8Guard(TOKENS);

  it('between characters: whole characters, leads and special tokens; never stray or invalid bytes', () => {
    const mask = Int32Array.of(-1);
    guard.restrict(mask, Utf8Guard.start);
    assert.deepEqual(allowed(mask), [0, 1, 8, 9]);
  });

  it('after E0 only A0–BF may follow (no overlong form), and the character must finish', () => {
    const state = guard.after(Utf8Guard.start, 1);
    const mask = Int32Array.of(-1);
    guard.restrict(mask, state);
    assert.deepEqual(allowed(mask), [3, 4]);
    assert.equal(guard.after(state, 4), Utf8Guard.start, 'E0 A0 80 is a whole character');
  });

  it('only clears bits: a token the grammar refused stays refused', () => {
    const mask = Int32Array.of(0b1);
    guard.restrict(mask, Utf8Guard.start);
    assert.deepEqual(allowed(mask), [0]);
  });
});
