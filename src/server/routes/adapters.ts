import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { ForbiddenError } from '../../errors.js';
import { checkAdapterName, type StoredAdapter } from '../../lora/index.js';
import { Adapter, AdapterDeleted, AdapterList, AdapterParams, AdapterUpload, LoadLoraAdapterRequest, UnloadLoraAdapterRequest } from '../schemas/adapters.js';
import { errorResponses } from '../schemas/common.js';
import { readUpload } from '../upload.js';
import type { Caller } from '../auth.js';

/** Adapter lifecycle: upload (validated in full before anything is visible), list, inspect, load, unload, delete. */
export const adapterRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const serving = app.serving;

  const info = async (a: StoredAdapter) => {
    const d = await serving.describe(a);
    const { tier, slot } = serving.cache.tierOf(a.name);
    return {
      id: a.name, object: 'adapter' as const, created: a.createdAt, base_model: serving.baseId,
      base_model_name_or_path: d.baseModelNameOrPath, r: d.r, lora_alpha: d.loraAlpha, max_rank: d.maxRank,
      target_modules: d.targetModules, use_rslora: d.useRslora, bias: d.bias, size_bytes: a.sizeBytes, tier, slot,
      source: a.external ? ('path' as const) : ('store' as const),
    };
  };

  /** Tenants may write only inside their scope; admins anywhere. */
  const mayWrite = (caller: Caller, name: string) => {
    if (!caller.canUse(name)) throw new ForbiddenError(`this API key may not manage an adapter named "${name}"`, { param: 'name' });
  };
  const adminOnly = (caller: Caller) => {
    if (!caller.admin) throw new ForbiddenError('this endpoint needs an admin API key');
  };

  app.post('/v1/adapters', {
    bodyLimit: serving.config.uploadBytes,
    schema: {
      tags: ['adapters'],
      summary: 'Upload (or replace) a PEFT LoRA adapter',
      description: 'Validated in full (strict safetensors, PEFT config against the base model) before it becomes visible; written atomically. Re-uploading a name replaces it; requests already running finish on the old weights.',
      consumes: ['multipart/form-data'],
      body: AdapterUpload,
      response: { 200: Type.Ref(Adapter), 201: Type.Ref(Adapter), ...errorResponses(400, 401, 403, 413, 422) },
    },
    // The multipart body is read as a stream by readUpload; the schema above documents it.
    validatorCompiler: () => () => true,
  }, async (request, reply) => {
    const upload = await readUpload(request);
    const name = checkAdapterName(upload.name);
    mayWrite(request.caller, name);
    serving.engine.parseAdapter(upload.files.config, upload.files.weights);
    const replaced = (await serving.current(name)) !== undefined;
    const stored = await serving.store.put(name, upload.files);
    serving.cache.forget(name);
    request.log.info({ adapter: name, replaced }, 'adapter stored');
    return reply.code(replaced ? 200 : 201).send(await info(stored));
  });

  app.get('/v1/adapters', {
    schema: { tags: ['adapters'], summary: 'List the adapters this caller may use', response: { 200: Type.Ref(AdapterList), ...errorResponses(401) } },
  }, async (request) => ({ object: 'list' as const, data: await Promise.all((await serving.visibleAdapters(request.caller)).map(info)) }));

  app.get('/v1/adapters/:name', {
    schema: { tags: ['adapters'], summary: 'One adapter: config summary, size, rank, targets and cache tier', params: AdapterParams, response: { 200: Type.Ref(Adapter), ...errorResponses(401, 404) } },
  }, async (request) => info(await serving.requireAdapter(request.caller, request.params.name)));

  app.delete('/v1/adapters/:name', {
    schema: { tags: ['adapters'], summary: 'Delete an adapter (requests already running finish first)', params: AdapterParams, response: { 200: Type.Ref(AdapterDeleted), ...errorResponses(401, 404) } },
  }, async (request) => {
    const a = await serving.requireAdapter(request.caller, request.params.name);
    await serving.store.delete(a.name);
    serving.cache.forget(a.name);
    return { id: a.name, object: 'adapter' as const, deleted: true as const };
  });

  app.post('/v1/adapters/:name/load', {
    schema: { tags: ['adapters'], summary: 'Warm an adapter into a device slot', params: AdapterParams, response: { 200: Type.Ref(Adapter), ...errorResponses(401, 404, 422) } },
  }, async (request) => {
    const a = await serving.requireAdapter(request.caller, request.params.name);
    await serving.cache.warm(a.name);
    return info(a);
  });

  app.post('/v1/adapters/:name/unload', {
    schema: { tags: ['adapters'], summary: 'Drop an adapter from the device and host caches (it stays on disk)', params: AdapterParams, response: { 200: Type.Ref(Adapter), ...errorResponses(401, 404, 409) } },
  }, async (request) => {
    const a = await serving.requireAdapter(request.caller, request.params.name);
    serving.cache.unload(a.name);
    return info(a);
  });

  // vLLM-compatible aliases (admin only: they read server-side paths).
  app.post('/v1/load_lora_adapter', {
    schema: { tags: ['vllm-compat'], summary: 'vLLM alias: register an adapter folder that lies under --lora-root', body: Type.Ref(LoadLoraAdapterRequest), response: { 200: Type.String(), ...errorResponses(400, 401, 403, 404, 422) } },
  }, async (request, reply) => {
    adminOnly(request.caller);
    const { lora_name: name, lora_path: path } = request.body as { lora_name: string; lora_path: string };
    checkAdapterName(name);
    const stored = await serving.store.registerPath(name, path, serving.config.loraRoot);
    try {
      const files = await serving.store.read(stored);
      serving.engine.parseAdapter(files.config, files.weights);
    } catch (err) {
      await serving.store.delete(name);
      throw err;
    }
    serving.cache.forget(name);
    return reply.type('text/plain').send(`Success: LoRA adapter '${name}' added successfully.`);
  });

  app.post('/v1/unload_lora_adapter', {
    schema: { tags: ['vllm-compat'], summary: 'vLLM alias: remove an adapter from the server', body: Type.Ref(UnloadLoraAdapterRequest), response: { 200: Type.String(), ...errorResponses(400, 401, 403, 404) } },
  }, async (request, reply) => {
    adminOnly(request.caller);
    const { lora_name: name } = request.body as { lora_name: string };
    await serving.requireAdapter(request.caller, name);
    await serving.store.delete(name);
    serving.cache.forget(name);
    return reply.type('text/plain').send(`Success: LoRA adapter '${name}' removed successfully.`);
  });
};
