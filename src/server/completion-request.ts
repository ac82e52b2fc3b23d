/**
 * From an OpenAI completion body to what the engine runs: the sampling fields mapped to the
 * engine's names, and the server's limits (prompt length, max_tokens, n) checked first.
 */
import {
  EmptyPromptError,
  InvalidRequestError,
  LoraServeError,
  MaxTokensTooLargeError,
  PromptTooLongError,
  UnsupportedParameterError,
} from '../errors.js';
import type { GenerateRequest } from '../engine/index.js';
import type { GenerationDefaults } from '../model/index.js';
import type { Tokenizer } from '../tokenizer/index.js';
import type { ServerConfig } from './config.js';
import type { SamplingBody } from './schemas/openai.js';

export type { SamplingBody };

export interface CompletionPrompt {
  tokens: number[];
  /** Text completions with `echo`: the prompt text, sent back before the answer. */
  echo?: string;
}

/** Chat's `logprobs` / `top_logprobs` as the alternatives per token, or null when logprobs are off. */
export function chatLogprobs(body: { logprobs?: boolean | null; top_logprobs?: number | null }): number | null {
  if (!body.logprobs) {
    if (body.top_logprobs !== undefined && body.top_logprobs !== null) {
      throw new InvalidRequestError('top_logprobs needs logprobs: true', { param: 'top_logprobs' });
    }
    return null;
  }
  return body.top_logprobs ?? 0;
}

/**
 * The prompts of a text completion in any of OpenAI's forms (a string, strings, token ids, lists of
 * token ids); each becomes one choice. Token ids are checked against the vocabulary.
 */
export function completionPrompts(
  prompt: string | string[] | number[] | number[][],
  echo: boolean,
  tokenizer: Tokenizer,
  vocabSize: number,
): CompletionPrompt[] {
  const list: Array<string | number[]> =
    typeof prompt === 'string' ? [prompt] : typeof prompt[0] === 'number' ? [prompt as number[]] : (prompt as Array<string | number[]>);
  return list.map((p) => {
    if (typeof p === 'string') return { tokens: tokenizer.encodePrompt(p), ...(echo ? { echo: p } : {}) };
    const bad = p.find((id) => id >= vocabSize);
    if (bad !== undefined)
      throw new InvalidRequestError(`token id ${bad} is outside this model's vocabulary of ${vocabSize}`, { param: 'prompt' });
    return { tokens: p, ...(echo ? { echo: tokenizer.decode(p) } : {}) };
  });
}

/**
 * The engine request for a body and its prompt tokens; `promptParam` names the field a prompt error
 * points at. The prompt must leave the model's context (`maxContext`) room for one token.
 */
export function generateRequest(
  body: SamplingBody,
  promptTokens: number[],
  limits: Pick<ServerConfig, 'maxPromptTokens' | 'maxTokens' | 'maxChoices'> & { maxContext: number },
  promptParam: 'messages' | 'prompt',
  defaults: GenerationDefaults['sampling'] = {},
): Omit<GenerateRequest, 'slot' | 'signal' | 'onDone'> {
  if ((body.n ?? 1) > limits.maxChoices) {
    throw new UnsupportedParameterError(`n ${body.n} exceeds this server's limit of ${limits.maxChoices} choices`, { param: 'n' });
  }
  if ((body.best_of ?? 1) > 1) throw new UnsupportedParameterError('best_of is not supported; use n', { param: 'best_of' });
  if (promptTokens.length === 0)
    throw new EmptyPromptError('the prompt is empty: give it at least one token of text', { param: promptParam });
  if (promptTokens.length > limits.maxPromptTokens) {
    throw new PromptTooLongError(`the prompt is ${promptTokens.length} tokens; this server accepts at most ${limits.maxPromptTokens}`, {
      param: promptParam,
    });
  }
  if (promptTokens.length >= limits.maxContext) {
    throw new PromptTooLongError(
      `the prompt is ${promptTokens.length} tokens; this model's context holds ${limits.maxContext}, answer included`,
      { param: promptParam },
    );
  }
  const grammar = body.response_format && body.response_format.type !== 'text';
  // A grammar decides when the output may end; these would fight it (its mask would allow nothing).
  for (const param of ['min_tokens', 'ignore_eos'] as const)
    if (grammar && body[param]) throw new UnsupportedParameterError(`${param} cannot be combined with response_format`, { param });
  const asked = body.max_completion_tokens ?? body.max_tokens;
  if (asked && asked > limits.maxTokens) {
    throw new MaxTokensTooLargeError(`max_tokens ${asked} exceeds this server's limit of ${limits.maxTokens}`, { param: 'max_tokens' });
  }
  return {
    promptTokens,
    maxTokens: asked ?? Math.min(defaults.maxNewTokens ?? limits.maxTokens, limits.maxTokens),
    ...(body.min_tokens ? { minTokens: body.min_tokens } : {}),
    stop: body.stop === undefined || body.stop === null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop,
    ignoreEos: body.ignore_eos ?? false,
    ...(body.priority ? { priority: body.priority } : {}),
    sampling: {
      temperature: body.temperature ?? defaults.temperature ?? 1,
      topP: body.top_p ?? defaults.topP ?? 1,
      topK: Math.max(0, body.top_k ?? defaults.topK ?? 0),
      frequencyPenalty: body.frequency_penalty ?? 0,
      presencePenalty: body.presence_penalty ?? 0,
      repetitionPenalty: body.repetition_penalty ?? defaults.repetitionPenalty ?? 1,
      seed: body.seed ?? null,
    },
  };
}

/** The request field behind each GenerateRequest field the engine may refuse (the prompt's is the endpoint's). */
const FIELD_OF_ENGINE_PARAM: Record<string, string> = {
  minTokens: 'min_tokens',
  ignoreEos: 'ignore_eos',
  adapters: 'model',
  slot: 'model',
  constraint: 'response_format',
};

/** An engine error as the request's client sees it: pointing at the request's own field. */
export function requestError(err: unknown, promptParam: 'messages' | 'prompt'): unknown {
  if (!(err instanceof LoraServeError) || err.param === null) return err;
  const field = err.param === 'promptTokens' ? promptParam : FIELD_OF_ENGINE_PARAM[err.param];
  return field === undefined ? err : err.withParam(field);
}
