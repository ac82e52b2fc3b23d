/**
 * Logprobs in OpenAI's two wire formats: chat's `{content: [{token, logprob, bytes, top_logprobs}]}`
 * and legacy completions' parallel lists (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`),
 * the shape lm-evaluation-harness reads.
 */
import type { TokenLogprob } from '../engine/index.js';
import type { Tokenizer } from '../tokenizer/index.js';

const utf8 = new TextDecoder();

export class LogprobWire {
  constructor(private readonly tokenizer: Tokenizer) {}

  private piece(id: number): { token: string; bytes: number[] } {
    const bytes = this.tokenizer.tokenBytes(id);
    return { token: utf8.decode(bytes), bytes: [...bytes] };
  }

  chat(lps: readonly TokenLogprob[]): { content: unknown[]; refusal: null } {
    return {
      content: lps.map((lp) => ({
        ...this.piece(lp.token),
        logprob: lp.logprob,
        top_logprobs: lp.top.map((t) => ({ ...this.piece(t.token), logprob: t.logprob })),
      })),
      refusal: null,
    };
  }

  /**
   * Legacy completions logprobs; `offset` is where the first token's text starts in the choice's
   * text. As vLLM does, `top_logprobs` holds the chosen token beside the k most likely.
   */
  text(tokens: readonly number[], lps: ReadonlyArray<TokenLogprob | null>, offset: number) {
    const out = {
      tokens: [] as string[],
      token_logprobs: [] as Array<number | null>,
      top_logprobs: [] as Array<Record<string, number> | null>,
      text_offset: [] as number[],
    };
    tokens.forEach((id, i) => {
      const lp = lps[i] ?? null;
      const token = this.piece(id).token;
      out.text_offset.push(offset);
      out.tokens.push(token);
      offset += token.length;
      // null: the first prompt token, with nothing before it to score it.
      out.token_logprobs.push(lp ? lp.logprob : null);
      out.top_logprobs.push(lp ? this.topDict(lp, token) : null);
    });
    return out;
  }

  private topDict(lp: TokenLogprob, token: string): Record<string, number> {
    const top: Record<string, number> = {};
    for (const t of lp.top) top[this.piece(t.token).token] ??= t.logprob;
    top[token] ??= lp.logprob;
    return top;
  }
}
