import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { FileDeleted, FileList, FileListQuery, FileObject, FileParams, FileUpload } from '../schemas/fine-tuning.js';
import { errorResponses } from '../schemas/common.js';
import { readFileUpload } from '../training-upload.js';
import { page } from '../../finetune/index.js';
import { limitOf } from './fine-tuning.js';

/** OpenAI's files: training data for fine-tuning jobs, per tenant. */
export const fileRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { finetune, config } = app.serving;

  app.post(
    '/files',
    {
      bodyLimit: config.trainingFileBytes + 64 * 1024,
      schema: {
        tags: ['fine-tuning'],
        summary: 'Upload a training file (JSONL, purpose "fine-tune")',
        description:
          'Each line is checked before anything is stored (a 400 names the first bad line); the file is written atomically in the tenant space.',
        consumes: ['multipart/form-data'],
        body: FileUpload,
        response: { 200: Type.Ref(FileObject), ...errorResponses(400, 401, 413) },
      },
      // The multipart body is read as a stream by readFileUpload; the schema above documents it.
      validatorCompiler: () => () => true,
    },
    async (request) => {
      const upload = await readFileUpload(request, config.trainingFileBytes);
      return finetune.upload(request.caller.tenant, upload.purpose, upload.filename, upload.data);
    },
  );

  app.get(
    '/files',
    {
      schema: {
        tags: ['fine-tuning'],
        summary: "List this tenant's files, newest first",
        querystring: FileListQuery,
        response: { 200: Type.Ref(FileList), ...errorResponses(400, 401) },
      },
    },
    async (request) => {
      const { purpose, after, limit } = request.query;
      return page(await finetune.files.list(request.caller.tenant, purpose), after, limitOf(limit, 10000));
    },
  );

  app.get(
    '/files/:file_id',
    {
      schema: {
        tags: ['fine-tuning'],
        summary: 'One file',
        params: FileParams,
        response: { 200: Type.Ref(FileObject), ...errorResponses(401, 404) },
      },
    },
    async (request) => finetune.files.get(request.caller.tenant, request.params.file_id),
  );

  app.get(
    '/files/:file_id/content',
    {
      schema: {
        tags: ['fine-tuning'],
        summary: "A file's bytes",
        params: FileParams,
        produces: ['application/octet-stream'],
        response: { 200: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }), ...errorResponses(401, 404) },
      },
    },
    async (request, reply) => {
      const data = await finetune.files.content(request.caller.tenant, request.params.file_id);
      return reply.type('application/octet-stream').send(data);
    },
  );

  app.delete(
    '/files/:file_id',
    {
      schema: {
        tags: ['fine-tuning'],
        summary: 'Delete a file (jobs already created keep their own copy)',
        params: FileParams,
        response: { 200: Type.Ref(FileDeleted), ...errorResponses(401, 404) },
      },
    },
    async (request) => {
      const file = await finetune.files.delete(request.caller.tenant, request.params.file_id);
      return { id: file.id, object: 'file' as const, deleted: true as const };
    },
  );
};
