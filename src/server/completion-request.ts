/**
 * From an OpenAI completion body to what the engine runs: the sampling fields mapped to the
 * engine's names, and the server's limits (prompt length, max_tokens, n) checked first.
 */
import { EmptyPromptError, MaxTokensTooLargeError, PromptTooLongError, UnsupportedParameterError } from '../errors.js';
import type { GenerateRequest } from '../engine/index.js';
import type { ChatMessage } from '../tokenizer/index.js';
import type { ServerConfig } from './config.js';

/** The fields chat and text completions share (OpenAI names, vLLM's top_k and ignore_eos). */
export interface SamplingBody {
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  ignore_eos?: boolean | null;
}

/** Chat messages with text parts joined: what the chat template renders. */
export function chatMessages(messages: ReadonlyArray<{ role: string; content: string | ReadonlyArray<{ text: string }> }>): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role,
    content: typeof m.content === 'string' ? m.content : m.content.map((p) => p.text).join(''),
  }));
}

/** The engine request for a body and its prompt tokens; `promptParam` names the field a prompt error points at. */
export function generateRequest(
  body: SamplingBody,
  promptTokens: number[],
  limits: Pick<ServerConfig, 'maxPromptTokens' | 'maxTokens'>,
  promptParam: 'messages' | 'prompt',
): Omit<GenerateRequest, 'slot' | 'signal' | 'onDone'> {
  if (body.n !== undefined && body.n !== null && body.n !== 1) throw new UnsupportedParameterError('n must be 1', { param: 'n' });
  if (promptTokens.length === 0)
    throw new EmptyPromptError('the prompt is empty: give it at least one token of text', { param: promptParam });
  if (promptTokens.length > limits.maxPromptTokens) {
    throw new PromptTooLongError(`the prompt is ${promptTokens.length} tokens; this server accepts at most ${limits.maxPromptTokens}`, {
      param: 'messages',
    });
  }
  const asked = body.max_completion_tokens ?? body.max_tokens;
  if (asked && asked > limits.maxTokens) {
    throw new MaxTokensTooLargeError(`max_tokens ${asked} exceeds this server's limit of ${limits.maxTokens}`, { param: 'max_tokens' });
  }
  return {
    promptTokens,
    maxTokens: asked ?? limits.maxTokens,
    stop: body.stop === undefined || body.stop === null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop,
    ignoreEos: body.ignore_eos ?? false,
    sampling: {
      temperature: body.temperature ?? 1,
      topP: body.top_p ?? 1,
      topK: body.top_k && body.top_k > 0 ? body.top_k : 0,
      frequencyPenalty: body.frequency_penalty ?? 0,
      presencePenalty: body.presence_penalty ?? 0,
      seed: body.seed ?? null,
    },
  };
}
