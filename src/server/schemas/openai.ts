import { Type, type Static } from '@sinclair/typebox';
import { Usage } from './common.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

/** Sampling fields shared by chat and text completions (OpenAI names, vLLM extensions). */
const SamplingFields = {
  model: Type.String({ description: 'An adapter name, or the base model id.' }),
  max_tokens: Type.Optional(Nullable(Type.Integer({ minimum: 1 }))),
  max_completion_tokens: Type.Optional(Nullable(Type.Integer({ minimum: 1 }))),
  temperature: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 2 }))),
  top_p: Type.Optional(Nullable(Type.Number({ exclusiveMinimum: 0, maximum: 1 }))),
  top_k: Type.Optional(Nullable(Type.Integer({ minimum: -1, description: 'vLLM extension; -1 or 0 = no limit.' }))),
  frequency_penalty: Type.Optional(Nullable(Type.Number({ minimum: -2, maximum: 2 }))),
  presence_penalty: Type.Optional(Nullable(Type.Number({ minimum: -2, maximum: 2 }))),
  seed: Type.Optional(Nullable(Type.Integer())),
  stop: Type.Optional(Nullable(Type.Union([Type.String(), Type.Array(Type.String(), { maxItems: 4 })]))),
  n: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 1, description: 'Only 1 is supported.' }))),
  stream: Type.Optional(Nullable(Type.Boolean())),
  stream_options: Type.Optional(Nullable(Type.Object({ include_usage: Type.Optional(Type.Boolean()) }))),
  ignore_eos: Type.Optional(Nullable(Type.Boolean({ description: 'vLLM extension: generate through end-of-sequence tokens until max_tokens.' }))),
  user: Type.Optional(Type.String()),
};

export const ChatMessage = Type.Object(
  {
    role: Type.Union([Type.Literal('system'), Type.Literal('user'), Type.Literal('assistant'), Type.Literal('developer')]),
    content: Type.Union([
      Type.String(),
      Type.Array(Type.Object({ type: Type.Literal('text'), text: Type.String() }), { description: 'Text parts only.' }),
    ]),
    name: Type.Optional(Type.String()),
  },
  { $id: 'ChatMessage' },
);

export const ChatCompletionRequest = Type.Object(
  { ...SamplingFields, messages: Type.Array(Type.Ref(ChatMessage), { minItems: 1 }) },
  { $id: 'ChatCompletionRequest' },
);
export type ChatCompletionRequest = Static<typeof ChatCompletionRequest> & { messages: Array<Static<typeof ChatMessage>> };

export const CompletionRequest = Type.Object(
  { ...SamplingFields, prompt: Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1, maxItems: 1 })]), echo: Type.Optional(Nullable(Type.Boolean())) },
  { $id: 'CompletionRequest' },
);
export type CompletionRequest = Static<typeof CompletionRequest>;

const FinishReason = Nullable(Type.Union([Type.Literal('stop'), Type.Literal('length')]));

export const ChatCompletion = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('chat.completion'),
    created: Type.Integer(),
    model: Type.String({ description: 'The adapter (or base model) that produced the answer.' }),
    choices: Type.Array(Type.Object({
      index: Type.Integer(),
      message: Type.Object({ role: Type.Literal('assistant'), content: Type.String() }),
      finish_reason: FinishReason,
      logprobs: Type.Null(),
    })),
    usage: Type.Ref(Usage),
  },
  { $id: 'ChatCompletion' },
);

export const ChatCompletionChunk = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('chat.completion.chunk'),
    created: Type.Integer(),
    model: Type.String(),
    choices: Type.Array(Type.Object({
      index: Type.Integer(),
      delta: Type.Object({ role: Type.Optional(Type.Literal('assistant')), content: Type.Optional(Type.String()) }),
      finish_reason: FinishReason,
      logprobs: Type.Null(),
    })),
    usage: Type.Optional(Nullable(Type.Ref(Usage))),
  },
  { $id: 'ChatCompletionChunk', description: 'One Server-Sent Event of a streamed chat completion; the stream ends with `data: [DONE]`.' },
);

export const Completion = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('text_completion'),
    created: Type.Integer(),
    model: Type.String(),
    choices: Type.Array(Type.Object({ index: Type.Integer(), text: Type.String(), finish_reason: FinishReason, logprobs: Type.Null() })),
    usage: Type.Ref(Usage),
  },
  { $id: 'Completion' },
);

export const Model = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('model'),
    created: Type.Integer(),
    owned_by: Type.String(),
    root: Type.String(),
    parent: Nullable(Type.String()),
  },
  { $id: 'Model' },
);
export const ModelList = Type.Object({ object: Type.Literal('list'), data: Type.Array(Type.Ref(Model)) }, { $id: 'ModelList' });
