import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { Model, ModelDeleted, ModelList } from '../schemas/openai.js';
import { errorResponses } from '../schemas/common.js';
import type { Caller } from '../auth.js';
import type { Serving } from '../serving.js';

async function models(serving: Serving, caller: Caller) {
  const base = serving.baseId;
  const created = Math.floor(Date.now() / 1000);
  return [
    { id: base, object: 'model' as const, created, owned_by: 'loraserve', root: base, parent: null },
    ...(await serving.adapters.visible(caller)).map((a) => ({
      id: a.name,
      object: 'model' as const,
      created: a.createdAt,
      owned_by: 'loraserve',
      root: base,
      parent: base,
    })),
    ...serving.finetune.jobs
      .models(caller.tenant)
      .map((m) => ({ id: m.id, object: 'model' as const, created: m.created, owned_by: caller.tenant, root: base, parent: base })),
    ...serving.adapters
      .visibleMixes(caller)
      .map((m) => ({ id: m.name, object: 'model' as const, created: m.createdAt, owned_by: 'loraserve', root: base, parent: base })),
  ];
}

/** OpenAI's model list: the base model and every adapter and saved mix this caller may use (parent = base, as vLLM does). */
export const modelRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/models',
    {
      schema: {
        tags: ['models'],
        summary: 'List the base model and the adapters this caller may use',
        response: { 200: Type.Ref(ModelList), ...errorResponses(401) },
      },
    },
    async (request) => ({ object: 'list' as const, data: await models(app.serving, request.caller) }),
  );

  app.get(
    '/models/:model',
    {
      schema: {
        tags: ['models'],
        summary: 'One model',
        params: Type.Object({ model: Type.String() }),
        response: { 200: Type.Ref(Model), ...errorResponses(401, 404) },
      },
    },
    async (request) => {
      const resolved = await app.serving.resolve(request.caller, request.params.model);
      return (await models(app.serving, request.caller)).find((m) => m.id === resolved.id)!;
    },
  );

  app.delete(
    '/models/:model',
    {
      schema: {
        tags: ['fine-tuning'],
        summary: 'Delete a fine-tuned model or checkpoint of this tenant (adapters are deleted under /v1/adapters)',
        params: Type.Object({ model: Type.String() }),
        response: { 200: Type.Ref(ModelDeleted), ...errorResponses(401, 404) },
      },
    },
    async (request) => {
      await app.serving.finetune.jobs.deleteModel(request.caller.tenant, request.params.model);
      return { id: request.params.model, object: 'model' as const, deleted: true as const };
    },
  );
};
