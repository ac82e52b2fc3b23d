import { Type, type Static, type TObject } from '@sinclair/typebox';
import { Usage } from './common.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

export const AdapterMixMember = Type.Object(
  {
    name: Type.String({ description: 'An adapter this key may use.' }),
    weight: Type.Number({ description: 'Its weight wᵢ in y = W x + Σ wᵢ sᵢ Bᵢ Aᵢ x.' }),
  },
  { $id: 'AdapterMixMember' },
);

/** Sampling fields shared by chat and text completions (OpenAI names, vLLM extensions). */
const SamplingFields = {
  model: Type.String({ description: 'An adapter name, a saved adapter mix, or the base model id.' }),
  adapters: Type.Optional(
    Nullable(
      Type.Array(Type.Ref(AdapterMixMember), {
        minItems: 1,
        description:
          "LoRAX's weighted adapter mix for this request: the row computes y = W x + Σ wᵢ sᵢ Bᵢ Aᵢ x over these adapters " +
          '(distinct names, finite weights, at most --max-mix-adapters, no DoRA adapter). `model` then only names the answer.',
      }),
    ),
  ),
  max_tokens: Type.Optional(Nullable(Type.Integer({ minimum: 1 }))),
  max_completion_tokens: Type.Optional(Nullable(Type.Integer({ minimum: 1 }))),
  temperature: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 2 }))),
  top_p: Type.Optional(Nullable(Type.Number({ exclusiveMinimum: 0, maximum: 1 }))),
  top_k: Type.Optional(Nullable(Type.Integer({ minimum: -1, description: 'vLLM extension; -1 or 0 = no limit.' }))),
  frequency_penalty: Type.Optional(Nullable(Type.Number({ minimum: -2, maximum: 2 }))),
  presence_penalty: Type.Optional(Nullable(Type.Number({ minimum: -2, maximum: 2 }))),
  seed: Type.Optional(Nullable(Type.Integer())),
  repetition_penalty: Type.Optional(
    Nullable(
      Type.Number({ exclusiveMinimum: 0, maximum: 2, description: 'vLLM extension: penalises prompt and output tokens (1 = off).' }),
    ),
  ),
  min_tokens: Type.Optional(
    Nullable(Type.Integer({ minimum: 0, description: 'vLLM extension: EOS cannot end the output before this many tokens.' })),
  ),
  response_format: Type.Optional(
    Nullable(
      Type.Object(
        {
          type: Type.Union([Type.Literal('text'), Type.Literal('json_object'), Type.Literal('json_schema')]),
          json_schema: Type.Optional(
            Type.Object(
              {
                name: Type.String({ pattern: '^[a-zA-Z0-9_-]{1,64}$' }),
                description: Type.Optional(Type.String()),
                schema: Type.Optional(Type.Object({}, { additionalProperties: true, description: 'A JSON Schema.' })),
                strict: Type.Optional(Nullable(Type.Boolean())),
              },
              { additionalProperties: false },
            ),
          ),
        },
        {
          additionalProperties: false,
          description:
            'Structured output, enforced token by token by a grammar (XGrammar): `json_object` (any JSON object) or `json_schema` (that schema; strict or not, the output always follows it). Schema keywords the grammar cannot enforce get a 400 naming them.',
        },
      ),
    ),
  ),
  stop: Type.Optional(Nullable(Type.Union([Type.String(), Type.Array(Type.String(), { maxItems: 4 })]))),
  n: Type.Optional(
    Nullable(
      Type.Integer({ minimum: 1, description: "Choices per prompt, up to the server's --max-n (default 8); the prompt is read once." }),
    ),
  ),
  best_of: Type.Optional(Nullable(Type.Integer({ minimum: 1, description: 'Not supported above 1 (400).' }))),
  stream: Type.Optional(Nullable(Type.Boolean())),
  stream_options: Type.Optional(Nullable(Type.Object({ include_usage: Type.Optional(Type.Boolean()) }, { additionalProperties: false }))),
  ignore_eos: Type.Optional(
    Nullable(Type.Boolean({ description: 'vLLM extension: generate through end-of-sequence tokens until max_tokens.' })),
  ),
  user: Type.Optional(Type.String({ description: "An end-user id (OpenAI's field): recorded in the request log with the model." })),
  priority: Type.Optional(
    Nullable(
      Type.Integer({
        description:
          "vLLM extension: order among this tenant's waiting requests, lower first (default 0). Across tenants rows are shared by weight.",
      }),
    ),
  ),
};

/** What chat and text completions share, as the server reads it. */
export type SamplingBody = Static<TObject<typeof SamplingFields>>;

/** A call an assistant turn made (in a request's history, and in a reply). */
export const ToolCall = Type.Object(
  {
    id: Type.String({ description: 'The call\'s id ("call_…"); a `tool` message answers it by this id.' }),
    type: Type.Literal('function'),
    function: Type.Object(
      { name: Type.String(), arguments: Type.String({ description: "The arguments as a JSON object's text." }) },
      { additionalProperties: false },
    ),
  },
  { $id: 'ToolCall', additionalProperties: false },
);

/**
 * A content part. Only `text` parts are taken: this is a text-only model, and other types (image_url,
 * input_audio, file) get a 400 that says so, rather than one about a missing `text`.
 */
const ContentPart = Type.Object(
  { type: Type.String({ description: '"text"; other part types are refused (text-only model).' }), text: Type.Optional(Type.String()) },
  { additionalProperties: true },
);

export const ChatMessage = Type.Object(
  {
    role: Type.Union([
      Type.Literal('system'),
      Type.Literal('user'),
      Type.Literal('assistant'),
      Type.Literal('developer'),
      Type.Literal('tool'),
    ]),
    content: Type.Optional(
      Nullable(
        Type.Union([Type.String(), Type.Array(ContentPart, { description: 'Text parts only.' })], {
          description: 'Required, except in an assistant message with `tool_calls` (null or left out there).',
        }),
      ),
    ),
    name: Type.Optional(Type.String({ description: "A participant's name, passed to the chat template (as vLLM does)." })),
    tool_calls: Type.Optional(Type.Array(Type.Ref(ToolCall), { description: "An assistant message's calls." })),
    tool_call_id: Type.Optional(Type.String({ description: 'A `tool` message: the id of the call whose result `content` holds.' })),
  },
  { $id: 'ChatMessage', additionalProperties: false },
);

export const ToolDefinition = Type.Object(
  {
    type: Type.Literal('function'),
    function: Type.Object(
      {
        name: Type.String({ pattern: '^[a-zA-Z0-9_-]{1,64}$' }),
        description: Type.Optional(Type.String()),
        parameters: Type.Optional(
          Type.Object(
            {},
            {
              additionalProperties: true,
              description: 'A JSON Schema for the arguments; the same keywords as response_format are enforced (others: 400).',
            },
          ),
        ),
        strict: Type.Optional(Nullable(Type.Boolean({ description: 'Accepted; arguments always follow the schema.' }))),
      },
      { additionalProperties: false },
    ),
  },
  { $id: 'ToolDefinition', additionalProperties: false },
);

/** Tool calling (OpenAI's fields), and the deprecated ones it replaced. */
const ToolFields = {
  tools: Type.Optional(
    Nullable(
      Type.Array(Type.Ref(ToolDefinition), {
        minItems: 1,
        description: 'Functions the model may call; rendered through the chat template, calls decoded under a grammar.',
      }),
    ),
  ),
  tool_choice: Type.Optional(
    Nullable(
      Type.Union(
        [
          Type.Literal('none'),
          Type.Literal('auto'),
          Type.Literal('required'),
          Type.Object(
            {
              type: Type.Literal('function'),
              function: Type.Object({ name: Type.String() }, { additionalProperties: false }),
            },
            { additionalProperties: false },
          ),
        ],
        {
          description:
            '`auto` (default with tools): text or calls, a started call always well formed; `required` or a named function: calls only, arguments following the schema; `none`: text, tools left out of the prompt.',
        },
      ),
    ),
  ),
  parallel_tool_calls: Type.Optional(Nullable(Type.Boolean({ description: 'More than one call per answer (default true).' }))),
  functions: Type.Optional(Type.Unknown({ description: 'Deprecated by OpenAI: refused with a 400; use `tools`.' })),
  function_call: Type.Optional(Type.Unknown({ description: 'Deprecated by OpenAI: refused with a 400; use `tool_choice`.' })),
};

export const ChatCompletionRequest = Type.Object(
  {
    ...SamplingFields,
    ...ToolFields,
    messages: Type.Array(Type.Ref(ChatMessage), { minItems: 1 }),
    logprobs: Type.Optional(
      Nullable(
        Type.Boolean({
          description: "Return each output token's logprob (of the model's raw distribution, before temperature and penalties).",
        }),
      ),
    ),
    top_logprobs: Type.Optional(
      Nullable(Type.Integer({ minimum: 0, maximum: 20, description: 'With `logprobs`: this many most likely alternatives per token.' })),
    ),
  },
  { $id: 'ChatCompletionRequest', additionalProperties: false },
);
export type ChatCompletionRequest = Static<typeof ChatCompletionRequest>;

const TokenIds = Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1 });

export const CompletionRequest = Type.Object(
  {
    ...SamplingFields,
    max_tokens: Type.Optional(Nullable(Type.Integer({ minimum: 0, description: '0 with `echo` scores the prompt without generating.' }))),
    prompt: Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1 }), TokenIds, Type.Array(TokenIds, { minItems: 1 })], {
      description: 'A string, a list of strings, a list of token ids, or a list of token-id lists; one choice (or `n`) per prompt.',
    }),
    echo: Type.Optional(
      Nullable(
        Type.Boolean({
          description: "Send the prompt back before the completion (with `logprobs`: the prompt tokens' logprobs, the first null).",
        }),
      ),
    ),
    logprobs: Type.Optional(
      Nullable(
        Type.Integer({
          minimum: 0,
          maximum: 20,
          description: "Return each token's logprob and this many most likely alternatives (raw model distribution).",
        }),
      ),
    ),
  },
  { $id: 'CompletionRequest', additionalProperties: false },
);
export type CompletionRequest = Static<typeof CompletionRequest>;

const FinishReason = Nullable(Type.Union([Type.Literal('stop'), Type.Literal('length')]));
const ChatFinishReason = Nullable(Type.Union([Type.Literal('stop'), Type.Literal('length'), Type.Literal('tool_calls')]));

/** A streamed call: the first fragment carries `id`, `type` and `function.name`, later ones pieces of `function.arguments`. */
const ToolCallDelta = Type.Object({
  index: Type.Integer(),
  id: Type.Optional(Type.String()),
  type: Type.Optional(Type.Literal('function')),
  function: Type.Object({ name: Type.Optional(Type.String()), arguments: Type.Optional(Type.String()) }),
});

const TopLogprob = Type.Object({ token: Type.String(), logprob: Type.Number(), bytes: Nullable(Type.Array(Type.Integer())) });
const ChatLogprobs = Nullable(
  Type.Object({
    content: Nullable(Type.Array(Type.Object({ ...TopLogprob.properties, top_logprobs: Type.Array(TopLogprob) }))),
    refusal: Type.Optional(Nullable(Type.Array(Type.Unknown()))),
  }),
);
const TextLogprobs = Nullable(
  Type.Object({
    tokens: Type.Array(Type.String()),
    token_logprobs: Type.Array(Nullable(Type.Number())),
    top_logprobs: Type.Array(Nullable(Type.Record(Type.String(), Type.Number()))),
    text_offset: Type.Array(Type.Integer()),
  }),
);

export const ChatCompletion = Type.Object(
  {
    id: Type.String(),
    object: Type.Literal('chat.completion'),
    created: Type.Integer(),
    model: Type.String({ description: 'The adapter (or base model) that produced the answer.' }),
    choices: Type.Array(
      Type.Object({
        index: Type.Integer(),
        message: Type.Object({
          role: Type.Literal('assistant'),
          content: Nullable(Type.String({ description: 'null when the answer is only tool calls.' })),
          tool_calls: Type.Optional(Type.Array(Type.Ref(ToolCall))),
        }),
        finish_reason: ChatFinishReason,
        logprobs: ChatLogprobs,
      }),
    ),
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
    choices: Type.Array(
      Type.Object({
        index: Type.Integer(),
        delta: Type.Object({
          role: Type.Optional(Type.Literal('assistant')),
          content: Type.Optional(Type.String()),
          tool_calls: Type.Optional(Type.Array(ToolCallDelta)),
        }),
        finish_reason: ChatFinishReason,
        logprobs: ChatLogprobs,
      }),
    ),
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
    choices: Type.Array(Type.Object({ index: Type.Integer(), text: Type.String(), finish_reason: FinishReason, logprobs: TextLogprobs })),
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
export const ModelDeleted = Type.Object(
  { id: Type.String(), object: Type.Literal('model'), deleted: Type.Literal(true) },
  { $id: 'ModelDeleted' },
);

export const ModelList = Type.Object({ object: Type.Literal('list'), data: Type.Array(Type.Ref(Model)) }, { $id: 'ModelList' });
