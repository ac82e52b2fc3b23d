/** How chat and text completions look on the wire, whole and as stream chunks (OpenAI's formats). */
import type { FinishReason, GenerationResult, TokenLogprob } from '../engine/index.js';
import type { LogprobWire } from './logprobs-wire.js';

/** Tokens and their logprobs (null for a first prompt token) to put on the wire; `offset`: where their text starts. */
export interface LogprobSpan {
  tokens: readonly number[];
  logprobs: ReadonlyArray<TokenLogprob | null>;
  offset: number;
}

export interface WireShape {
  object: 'chat.completion' | 'text_completion';
  chunkObject: 'chat.completion.chunk' | 'text_completion';
  idPrefix: string;
  /** The stream opens with a role-only chunk (chat) or with nothing (text, unless echoing). */
  opensWithRole: boolean;
  choice(index: number, text: string, finish: FinishReason | null, logprobs: unknown): Record<string, unknown>;
  chunk(index: number, text: string | null, first: boolean, finish: FinishReason | null, logprobs: unknown): Record<string, unknown>;
  logprobs(wire: LogprobWire, span: LogprobSpan): unknown;
}

/** OpenAI's finish reasons have no "cancelled": a stream cut by the request timeout ends with "stop". */
export const wireFinish = (f: FinishReason | null) => (f === 'cancelled' ? 'stop' : f);

export const CHAT_SHAPE: WireShape = {
  object: 'chat.completion',
  chunkObject: 'chat.completion.chunk',
  idPrefix: 'chatcmpl-',
  opensWithRole: true,
  choice: (index, text, finish, logprobs) => ({
    index,
    message: { role: 'assistant', content: text },
    finish_reason: wireFinish(finish),
    logprobs,
  }),
  chunk: (index, text, first, finish, logprobs) => ({
    index,
    delta: { ...(first ? { role: 'assistant' } : {}), ...(text !== null ? { content: text } : {}) },
    finish_reason: wireFinish(finish),
    logprobs,
  }),
  logprobs: (wire, span) => wire.chat(span.logprobs.filter((l) => l !== null)),
};

export const TEXT_SHAPE: WireShape = {
  object: 'text_completion',
  chunkObject: 'text_completion',
  idPrefix: 'cmpl-',
  opensWithRole: false,
  choice: (index, text, finish, logprobs) => ({ index, text, finish_reason: wireFinish(finish), logprobs }),
  chunk: (index, text, _first, finish, logprobs) => ({ index, text: text ?? '', finish_reason: wireFinish(finish), logprobs }),
  logprobs: (wire, span) => wire.text(span.tokens, span.logprobs, span.offset),
};

export function usage(r: Pick<GenerationResult, 'promptTokens' | 'completionTokens' | 'cachedTokens'>) {
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    total_tokens: r.promptTokens + r.completionTokens,
    prompt_tokens_details: { cached_tokens: r.cachedTokens },
  };
}
