import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyServerOptions } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import multipart from '@fastify/multipart';
import type { FastifyPluginAsyncTypebox, TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ForbiddenError, NotFoundError } from '../errors.js';
import { ANONYMOUS_ADMIN, isLoopback } from './auth.js';
import { errorHandler } from './error-handler.js';
import { ErrorResponse, Usage } from './schemas/common.js';
import {
  AdapterMixMember,
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  ChatMessage,
  Completion,
  CompletionRequest,
  Model,
  ModelDeleted,
  ModelList,
  ToolCall,
  ToolDefinition,
} from './schemas/openai.js';
import { Adapter, AdapterDeleted, AdapterList, AdapterMix, LoadLoraAdapterRequest, UnloadLoraAdapterRequest } from './schemas/adapters.js';
import { completionRoutes } from './routes/completions.js';
import { modelRoutes } from './routes/models.js';
import { adapterRoutes } from './routes/adapters.js';
import { healthRoutes } from './routes/health.js';
import { usageRoutes } from './routes/usage.js';
import { fileRoutes } from './routes/files.js';
import { fineTuningRoutes } from './routes/fine-tuning.js';
import {
  CreateJobRequest,
  FileDeleted,
  FileList,
  FileObject,
  FineTuningJob,
  FineTuningJobCheckpoint,
  FineTuningJobCheckpointList,
  FineTuningJobEvent,
  FineTuningJobEventList,
  FineTuningJobList,
  Hyperparameters,
  LoraSettings,
} from './schemas/fine-tuning.js';
import { TenantUsage, UsageList } from './schemas/usage.js';
import type { Serving } from './serving.js';
import type { App } from './types.js';

export const SHARED_SCHEMAS = [
  ErrorResponse,
  Usage,
  AdapterMixMember,
  ToolCall,
  ToolDefinition,
  ChatMessage,
  ChatCompletionRequest,
  CompletionRequest,
  ChatCompletion,
  ChatCompletionChunk,
  Completion,
  Model,
  ModelList,
  ModelDeleted,
  Adapter,
  AdapterList,
  AdapterDeleted,
  AdapterMix,
  LoadLoraAdapterRequest,
  UnloadLoraAdapterRequest,
  TenantUsage,
  UsageList,
  FileObject,
  FileList,
  FileDeleted,
  Hyperparameters,
  LoraSettings,
  CreateJobRequest,
  FineTuningJob,
  FineTuningJobList,
  FineTuningJobEvent,
  FineTuningJobEventList,
  FineTuningJobCheckpoint,
  FineTuningJobCheckpointList,
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
    genReqId: (req) =>
      typeof req.headers['x-request-id'] === 'string' && req.headers['x-request-id'].length <= 128
        ? req.headers['x-request-id']
        : randomUUID(),
    bodyLimit: serving.config.chatBodyBytes,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false, verbose: true }, plugins: [] },
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.decorate('serving', serving);
  app.decorateRequest('caller', null as never);
  for (const s of SHARED_SCHEMAS) app.addSchema(s);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: OPENAPI_INFO,
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'An API key from the keys file (none needed when the server runs without one).',
          },
        },
      },
      security: [{ bearer: [] }],
      tags: [
        { name: 'generation', description: 'OpenAI-compatible completions; `model` picks the adapter' },
        { name: 'models', description: 'OpenAI model list' },
        { name: 'adapters', description: 'Adapter lifecycle' },
        { name: 'vllm-compat', description: 'vLLM-compatible adapter endpoints' },
        { name: 'fine-tuning', description: "OpenAI's files and fine_tuning.jobs: train an adapter from a tenant's data" },
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
  });

  await app.register(v1Routes, { prefix: '/v1' });
  await app.register(healthRoutes);
  return app;
}

/**
 * The API proper. Registered as its own (encapsulated) plugin, so its authentication hook runs for
 * these routes and its unknown paths, and for nothing outside them (probes, metrics, docs).
 */
const v1Routes: FastifyPluginAsyncTypebox = async (v1) => {
  const keys = v1.serving.keys;
  v1.addHook('onRequest', async (request) => {
    // Without keys every caller is an admin: whatever address the embedder listens on, only this host may call.
    if (!keys && !isLoopback(request.socket.remoteAddress))
      throw new ForbiddenError('this server has no API keys file, so it answers callers on its own host only');
    const { authorization, 'x-api-key': apiKey } = request.headers;
    request.caller = keys ? keys.authenticate(authorization, typeof apiKey === 'string' ? apiKey : undefined) : ANONYMOUS_ADMIN;
  });
  v1.setNotFoundHandler((request) => {
    throw new NotFoundError(`no route ${request.method} ${request.url}`);
  });
  await v1.register(completionRoutes);
  await v1.register(modelRoutes);
  await v1.register(adapterRoutes);
  await v1.register(usageRoutes);
  await v1.register(fileRoutes);
  await v1.register(fineTuningRoutes);
};
