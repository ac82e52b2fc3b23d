import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import {
  Adapter,
  AdapterDeleted,
  AdapterList,
  AdapterMix,
  AdapterMixDeleted,
  AdapterMixRequest,
  AdapterParams,
  AdapterUpload,
  LoadLoraAdapterRequest,
  UnloadLoraAdapterRequest,
} from '../schemas/adapters.js';
import { errorResponses } from '../schemas/common.js';
import { readUpload } from '../upload.js';
import type { AdapterView } from '../adapter-service.js';
import type { SavedMix } from '../../lora/index.js';

/** An adapter as the API shows it. */
function adapterBody(a: AdapterView, baseModel: string) {
  const s = a.summary;
  return {
    id: a.stored.name,
    object: 'adapter' as const,
    created: a.stored.createdAt,
    base_model: baseModel,
    base_model_name_or_path: s?.baseModelNameOrPath ?? null,
    r: s?.r ?? null,
    lora_alpha: s?.loraAlpha ?? null,
    max_rank: s?.maxRank ?? null,
    target_modules: s?.targetModules ?? [],
    use_rslora: s?.useRslora ?? null,
    use_dora: s?.useDora ?? null,
    bias: s?.bias ?? null,
    size_bytes: a.stored.sizeBytes,
    tier: a.tier,
    slot: a.slot,
    source: a.stored.external ? ('path' as const) : ('store' as const),
  };
}

/** Adapter lifecycle: upload (validated in full before anything is visible), list, inspect, load, unload, delete. */
export const adapterRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { adapters, config } = app.serving;
  const body = (a: AdapterView) => adapterBody(a, app.serving.baseId);

  app.post(
    '/adapters',
    {
      bodyLimit: config.uploadBytes,
      schema: {
        tags: ['adapters'],
        summary: 'Upload (or replace) a PEFT LoRA adapter',
        description:
          'Validated in full (strict safetensors, PEFT config against the base model) before it becomes visible; written atomically. ' +
          'Re-uploading a name replaces it; requests already running finish on the old weights.',
        consumes: ['multipart/form-data'],
        body: AdapterUpload,
        response: { 200: Type.Ref(Adapter), 201: Type.Ref(Adapter), ...errorResponses(400, 401, 403, 413, 422) },
      },
      // The multipart body is read as a stream by readUpload; the schema above documents it.
      validatorCompiler: () => () => true,
    },
    async (request, reply) => {
      const upload = await readUpload(request);
      const { adapter, replaced } = await adapters.upload(request.caller, upload.name, upload.files);
      request.log.info({ adapter: adapter.stored.name, replaced }, 'adapter stored');
      return reply.code(replaced ? 200 : 201).send(body(adapter));
    },
  );

  app.get(
    '/adapters',
    {
      schema: {
        tags: ['adapters'],
        summary: 'List the adapters this caller may use',
        response: { 200: Type.Ref(AdapterList), ...errorResponses(401) },
      },
    },
    async (request) => ({ object: 'list' as const, data: (await adapters.list(request.caller)).map(body) }),
  );

  app.get(
    '/adapters/:name',
    {
      schema: {
        tags: ['adapters'],
        summary: 'One adapter: config summary, size, rank, targets and cache tier',
        params: AdapterParams,
        response: { 200: Type.Ref(Adapter), ...errorResponses(401, 404) },
      },
    },
    async (request) => body(await adapters.describe(request.caller, request.params.name)),
  );

  app.delete(
    '/adapters/:name',
    {
      schema: {
        tags: ['adapters'],
        summary: 'Delete an adapter (requests already running finish first)',
        params: AdapterParams,
        response: { 200: Type.Ref(AdapterDeleted), ...errorResponses(401, 404) },
      },
    },
    async (request) => {
      await adapters.remove(request.caller, request.params.name);
      return { id: request.params.name, object: 'adapter' as const, deleted: true as const };
    },
  );

  app.post(
    '/adapters/:name/load',
    {
      schema: {
        tags: ['adapters'],
        summary: 'Warm an adapter into a device slot',
        params: AdapterParams,
        response: { 200: Type.Ref(Adapter), ...errorResponses(400, 401, 404, 422) },
      },
    },
    async (request) => body(await adapters.warm(request.caller, request.params.name)),
  );

  app.post(
    '/adapters/:name/unload',
    {
      schema: {
        tags: ['adapters'],
        summary: 'Drop an adapter from the device and host caches (it stays on disk)',
        params: AdapterParams,
        response: { 200: Type.Ref(Adapter), ...errorResponses(401, 404, 409) },
      },
    },
    async (request) => body(await adapters.unload(request.caller, request.params.name)),
  );

  const mixBody = (m: SavedMix) => ({
    id: m.name,
    object: 'adapter_mix' as const,
    created: m.createdAt,
    base_model: app.serving.baseId,
    adapters: m.members,
  });

  app.post(
    '/adapters/:name/mix',
    {
      schema: {
        tags: ['adapters'],
        summary: 'Save (or replace) a named weighted mix of adapters, served like an adapter',
        description:
          'The name then works as `model` in chat and text completions and is listed in /v1/models; its rows compute ' +
          'y = W x + Σ wᵢ sᵢ Bᵢ Aᵢ x over the adapters named (looked up when used). No weights are written.',
        params: AdapterParams,
        body: AdapterMixRequest,
        response: { 200: Type.Ref(AdapterMix), 201: Type.Ref(AdapterMix), ...errorResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const { mix, replaced } = await adapters.saveMix(request.caller, request.params.name, request.body.adapters);
      return reply.code(replaced ? 200 : 201).send(mixBody(mix));
    },
  );

  app.get(
    '/adapters/:name/mix',
    {
      schema: {
        tags: ['adapters'],
        summary: 'One saved adapter mix',
        params: AdapterParams,
        response: { 200: Type.Ref(AdapterMix), ...errorResponses(401, 404) },
      },
    },
    async (request) => mixBody(adapters.requireMix(request.caller, request.params.name)),
  );

  app.delete(
    '/adapters/:name/mix',
    {
      schema: {
        tags: ['adapters'],
        summary: 'Delete a saved adapter mix (its adapters stay)',
        params: AdapterParams,
        response: { 200: AdapterMixDeleted, ...errorResponses(401, 404) },
      },
    },
    async (request) => {
      await adapters.deleteMix(request.caller, request.params.name);
      return { id: request.params.name, object: 'adapter_mix' as const, deleted: true as const };
    },
  );

  // vLLM-compatible aliases (admin only: they read server-side paths).
  app.post(
    '/load_lora_adapter',
    {
      schema: {
        tags: ['vllm-compat'],
        summary: 'vLLM alias: register an adapter folder that lies under --lora-root',
        body: Type.Ref(LoadLoraAdapterRequest),
        response: { 200: Type.String(), ...errorResponses(400, 401, 403, 404, 422) },
      },
    },
    async (request, reply) => {
      const { lora_name: name, lora_path: path, load_inplace } = request.body;
      await adapters.register(request.caller, name, path, load_inplace ?? false);
      return reply.type('text/plain').send(`Success: LoRA adapter '${name}' added successfully.`);
    },
  );

  app.post(
    '/unload_lora_adapter',
    {
      schema: {
        tags: ['vllm-compat'],
        summary: 'vLLM alias: remove an adapter from the server',
        body: Type.Ref(UnloadLoraAdapterRequest),
        response: { 200: Type.String(), ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const { lora_name: name } = request.body;
      await adapters.unregister(request.caller, name);
      return reply.type('text/plain').send(`Success: LoRA adapter '${name}' removed successfully.`);
    },
  );
};
