import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type, type TSchema } from '@sinclair/typebox';
import { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Completion, CompletionRequest } from '../schemas/openai.js';
import { errorResponses } from '../schemas/common.js';
import { chatLogprobs, completionPrompts } from '../completion-request.js';
import { serveCompletion } from '../serve-completion.js';
import { chatPrompt, toolUse } from '../tool-calls.js';
import { CHAT_SHAPE, TEXT_SHAPE } from '../wire-shapes.js';

const streamOrJson = (json: unknown, chunk: unknown) => ({
  description: 'A completion, or with `stream: true` a stream of Server-Sent Events (`data: <chunk>` … `data: [DONE]`).',
  content: { 'application/json': { schema: json }, 'text/event-stream': { schema: chunk } },
});

/** OpenAI-compatible completions: chat, and raw-prompt text completions. */
export const completionRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const serving = app.serving;
  const options = <Body extends TSchema>(summary: string, body: Body, json: TSchema, chunk: TSchema) => ({
    bodyLimit: serving.config.chatBodyBytes,
    schema: {
      tags: ['generation'],
      summary,
      body,
      response: { 200: streamOrJson(json, chunk), ...errorResponses(400, 401, 404, 413, 429, 503) },
    },
  });

  app.post(
    '/chat/completions',
    options(
      'Chat completion with an adapter (model = adapter name) or the base model',
      Type.Ref(ChatCompletionRequest),
      Type.Ref(ChatCompletion),
      Type.Ref(ChatCompletionChunk),
    ),
    async (request, reply) => {
      const { body } = request;
      // The body's own rules (messages, tools) are checked before the model is looked up, as the schema's are.
      const tools = toolUse(body);
      const tokens = chatPrompt(serving.engine.tokenizer, body, tools);
      const model = await serving.resolve(request.caller, body.model, body.adapters);
      return serveCompletion(serving, request, reply, {
        model,
        prompts: [{ tokens }],
        body,
        tools,
        shape: CHAT_SHAPE,
        endpoint: 'chat',
        logprobs: chatLogprobs(body),
      });
    },
  );

  app.post(
    '/completions',
    options(
      'Text completion of a raw prompt with an adapter or the base model',
      Type.Ref(CompletionRequest),
      Type.Ref(Completion),
      Type.Ref(Completion),
    ),
    async (request, reply) => {
      const { body } = request;
      const model = await serving.resolve(request.caller, body.model, body.adapters);
      return serveCompletion(serving, request, reply, {
        model,
        prompts: completionPrompts(body.prompt, Boolean(body.echo), serving.engine.tokenizer, serving.engine.model.dims.vocabSize),
        body,
        shape: TEXT_SHAPE,
        endpoint: 'completions',
        logprobs: body.logprobs ?? null,
      });
    },
  );
};
