/** How chat and text completions look on the wire, whole and as stream chunks (OpenAI's formats). */
import type { FinishReason, GenerationResult } from '../engine/index.js';

export interface WireShape {
  object: 'chat.completion' | 'text_completion';
  chunkObject: 'chat.completion.chunk' | 'text_completion';
  idPrefix: string;
  /** The stream opens with a role-only chunk (chat) or with nothing (text, unless echoing). */
  opensWithRole: boolean;
  choice(text: string, finish: FinishReason | null): Record<string, unknown>;
  chunk(text: string | null, first: boolean, finish: FinishReason | null): Record<string, unknown>;
}

/** OpenAI's finish reasons have no "cancelled": a stream cut by the request timeout ends with "stop". */
const wireFinish = (f: FinishReason | null) => (f === 'cancelled' ? 'stop' : f);

export const CHAT_SHAPE: WireShape = {
  object: 'chat.completion',
  chunkObject: 'chat.completion.chunk',
  idPrefix: 'chatcmpl-',
  opensWithRole: true,
  choice: (text, finish) => ({
    index: 0,
    message: { role: 'assistant', content: text },
    finish_reason: wireFinish(finish),
    logprobs: null,
  }),
  chunk: (text, first, finish) => ({
    index: 0,
    delta: { ...(first ? { role: 'assistant' } : {}), ...(text !== null ? { content: text } : {}) },
    finish_reason: wireFinish(finish),
    logprobs: null,
  }),
};

export const TEXT_SHAPE: WireShape = {
  object: 'text_completion',
  chunkObject: 'text_completion',
  idPrefix: 'cmpl-',
  opensWithRole: false,
  choice: (text, finish) => ({ index: 0, text, finish_reason: wireFinish(finish), logprobs: null }),
  chunk: (text, _first, finish) => ({ index: 0, text: text ?? '', finish_reason: wireFinish(finish), logprobs: null }),
};

export function usage(r: Pick<GenerationResult, 'promptTokens' | 'completionTokens'>) {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens };
}
