/**
 * Keeps a constrained row's bytes valid UTF-8. XGrammar 0.1.27 matches multi-byte characters
 * loosely at the byte level: overlong forms, surrogates, code points past U+10FFFF and bytes that
 * never occur in UTF-8 (C0, C1, F5–FF) get through. A model that spells characters byte by byte
 * could then write text that decodes to U+FFFD, and a string's length would differ from the count
 * the grammar enforced. The guard knows, for each place inside a character, which tokens keep the
 * bytes valid (RFC 3629's table), and clears the others from the grammar's mask.
 */

/** Where a byte stream is: 0 between characters, else `remaining << 16 | lo << 8 | hi` (the next byte's range). */
type Utf8State = number;

const IDLE: Utf8State = 0;
const INVALID = -1;
const within = (remaining: number, lo: number, hi: number): Utf8State => (remaining << 16) | (lo << 8) | hi;

function advance(state: Utf8State, byte: number): Utf8State {
  if (state === IDLE) {
    if (byte < 0x80) return IDLE;
    if (byte >= 0xc2 && byte <= 0xdf) return within(1, 0x80, 0xbf);
    if (byte === 0xe0) return within(2, 0xa0, 0xbf);
    if (byte === 0xed) return within(2, 0x80, 0x9f);
    if (byte >= 0xe1 && byte <= 0xef) return within(2, 0x80, 0xbf);
    if (byte === 0xf0) return within(3, 0x90, 0xbf);
    if (byte >= 0xf1 && byte <= 0xf3) return within(3, 0x80, 0xbf);
    if (byte === 0xf4) return within(3, 0x80, 0x8f);
    return INVALID;
  }
  const remaining = state >> 16;
  if (byte < ((state >> 8) & 0xff) || byte > (state & 0xff)) return INVALID;
  return remaining === 1 ? IDLE : within(remaining - 1, 0x80, 0xbf);
}

function advanceAll(state: Utf8State, bytes: Uint8Array): Utf8State {
  for (const b of bytes) {
    state = advance(state, b);
    if (state === INVALID) break;
  }
  return state;
}

export class Utf8Guard {
  /** Per state: bit t set when token t keeps the bytes valid (computed on first use; at most 8 states). */
  private readonly valid = new Map<Utf8State, Int32Array>();

  /** `tokenBytes[t]`: the bytes token t writes (empty for special tokens). */
  constructor(private readonly tokenBytes: readonly Uint8Array[]) {}

  /** Clears from `mask` every token that would make invalid UTF-8 after `state`. */
  restrict(mask: Int32Array, state: Utf8State): void {
    let valid = this.valid.get(state);
    if (!valid) {
      valid = new Int32Array(mask.length);
      this.tokenBytes.forEach((bytes, t) => {
        // A special token writes no text, so it may only come between characters.
        const ok = bytes.length ? advanceAll(state, bytes) !== INVALID : state === IDLE;
        if (ok) valid![t >> 5]! |= 1 << (t & 31);
      });
      this.valid.set(state, valid);
    }
    for (let w = 0; w < mask.length; w++) mask[w]! &= valid[w] ?? 0;
  }

  after(state: Utf8State, token: number): Utf8State {
    return advanceAll(state, this.tokenBytes[token] ?? new Uint8Array());
  }

  static readonly start: Utf8State = IDLE;
}
