import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import multipart from '@fastify/multipart';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { NotFoundError } from '../errors.js';
import { ANONYMOUS_ADMIN } from './auth.js';
import { errorHandler } from './error-handler.js';
import { ErrorResponse, Usage } from './schemas/common.js';
import { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage, Completion, CompletionRequest, Model, ModelList } from './schemas/openai.js';
import { Adapter, AdapterDeleted, AdapterList, LoadLoraAdapterRequest, UnloadLoraAdapterRequest } from './schemas/adapters.js';
import { generationRoutes } from './routes/chat.js';
import { modelRoutes } from './routes/models.js';
import { adapterRoutes } from './routes/adapters.js';
import { healthRoutes } from './routes/health.js';
import type { Serving } from './serving.js';
import type { App } from './types.js';

export const SHARED_SCHEMAS = [
  ErrorResponse, Usage, ChatMessage, ChatCompletionRequest, CompletionRequest, ChatCompletion, ChatCompletionChunk, Completion,
  Model, ModelList, Adapter, AdapterList, AdapterDeleted, LoadLoraAdapterRequest, UnloadLoraAdapterRequest,
];

export const OPENAPI_INFO = {
  title: 'loraserve',
  description: 'Multi-tenant LoRA adapter inference: one resident base model, many PEFT adapters batched together, OpenAI-compatible.',
  version: '0.1.0',
};

/** The Fastify app over a ready Serving. The OpenAPI document is generated from the route schemas. */
export async function buildApp(serving: Serving, options: { logger?: FastifyServerOptions['logger'] } = {}): Promise<App> {
  const app = Fastify({
    logger: options.logger ?? false,
    genReqId: (req) => (typeof req.headers['x-request-id'] === 'string' && req.headers['x-request-id'].length <= 128 ? req.headers['x-request-id'] : randomUUID()),
    bodyLimit: serving.config.chatBodyBytes,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false, verbose: true }, plugins: [] },
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.decorate('serving', serving);
  app.decorateRequest('caller', null as never);
  for (const s of SHARED_SCHEMAS) app.addSchema(s);

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: OPENAPI_INFO,
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An API key from the keys file (none needed when the server runs without one).' } } },
      security: [{ bearer: [] }],
      tags: [
        { name: 'generation', description: 'OpenAI-compatible completions; `model` picks the adapter' },
        { name: 'models', description: 'OpenAI model list' },
        { name: 'adapters', description: 'Adapter lifecycle' },
        { name: 'vllm-compat', description: 'vLLM-compatible adapter endpoints' },
        { name: 'health', description: 'Probes and metrics' },
      ],
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  await app.register(multipart, { limits: { fileSize: serving.config.uploadBytes, files: 4, fields: 4, parts: 8 } });

  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request) => {
    throw new NotFoundError(`no route ${request.method} ${request.url}`);
  });
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    request.caller = serving.keys && request.url.startsWith('/v1/')
      ? serving.keys.authenticate(request.headers.authorization, request.headers['x-api-key'] as string | undefined)
      : ANONYMOUS_ADMIN;
  });

  await app.register(generationRoutes);
  await app.register(modelRoutes);
  await app.register(adapterRoutes);
  await app.register(healthRoutes);
  return app;
}
