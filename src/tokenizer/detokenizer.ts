/**
 * Incremental detokenization (the prefix/read-offset scheme of TGI and vLLM): a token's text is
 * released only once decoding no longer ends in U+FFFD, so a multi-byte UTF-8 character split
 * across byte-level tokens (every Hangul syllable is three bytes) never streams broken.
 */
export class IncrementalDetokenizer {
  private readonly tokens: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(private readonly decode: (ids: number[]) => string) {}

  /** Adds a token; returns the text that became final (possibly empty). */
  push(token: number): string {
    this.tokens.push(token);
    const prefix = this.decode(this.tokens.slice(this.prefixOffset, this.readOffset));
    const full = this.decode(this.tokens.slice(this.prefixOffset));
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      this.prefixOffset = this.readOffset;
      this.readOffset = this.tokens.length;
      return full.slice(prefix.length);
    }
    return '';
  }

  /** Whatever is still held back at the end of generation. */
  flush(): string {
    const prefix = this.decode(this.tokens.slice(this.prefixOffset, this.readOffset));
    const full = this.decode(this.tokens.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.tokens.length;
    return full.length > prefix.length ? full.slice(prefix.length) : '';
  }
}
