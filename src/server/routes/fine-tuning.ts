import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import {
  CreateJobRequest,
  FineTuningJob,
  FineTuningJobCheckpointList,
  FineTuningJobEventList,
  FineTuningJobList,
  JobParams,
  PageQuery,
} from '../schemas/fine-tuning.js';
import { errorResponses } from '../schemas/common.js';

/** A page size from the query (text), at most `max`; OpenAI's default is 20. */
export const limitOf = (limit: string | undefined, max: number) => Math.min(Number(limit ?? 20), max);

/** OpenAI's fine_tuning.jobs: train a LoRA adapter on the base model from the tenant's files; the result is served at once. */
export const fineTuningRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { jobs } = app.serving.finetune;

  app.post(
    '/fine_tuning/jobs',
    {
      schema: {
        tags: ['fine-tuning'],
        summary: 'Create a fine-tuning job',
        description:
          'Trains a LoRA adapter in a worker process (low priority, --training-threads) while serving goes on; at most ' +
          '--max-training-jobs train at once, the rest are queued. The result is served as `fine_tuned_model`.',
        body: Type.Ref(CreateJobRequest),
        response: { 200: Type.Ref(FineTuningJob), ...errorResponses(400, 401, 404) },
      },
    },
    async (request) => jobs.create(request.caller.tenant, request.body),
  );

  app.get(
    '/fine_tuning/jobs',
    {
      schema: {
        tags: ['fine-tuning'],
        summary: "List this tenant's jobs, newest first",
        querystring: PageQuery,
        response: { 200: Type.Ref(FineTuningJobList), ...errorResponses(400, 401) },
      },
    },
    async (request) => jobs.list(request.caller.tenant, request.query.after, limitOf(request.query.limit, 100)),
  );

  app.get(
    '/fine_tuning/jobs/:fine_tuning_job_id',
    {
      schema: {
        tags: ['fine-tuning'],
        summary: 'One job',
        params: JobParams,
        response: { 200: Type.Ref(FineTuningJob), ...errorResponses(401, 404) },
      },
    },
    async (request) => jobs.get(request.caller.tenant, request.params.fine_tuning_job_id),
  );

  app.post(
    '/fine_tuning/jobs/:fine_tuning_job_id/cancel',
    {
      schema: {
        tags: ['fine-tuning'],
        summary: 'Cancel a job (a running one stops at its next step; the answer comes once it has)',
        params: JobParams,
        response: { 200: Type.Ref(FineTuningJob), ...errorResponses(401, 404, 409) },
      },
    },
    async (request) => jobs.cancel(request.caller.tenant, request.params.fine_tuning_job_id),
  );

  app.get(
    '/fine_tuning/jobs/:fine_tuning_job_id/events',
    {
      schema: {
        tags: ['fine-tuning'],
        summary: "A job's events, newest first: validation, each step's training loss, each epoch's validation loss, checkpoints, the end",
        params: JobParams,
        querystring: PageQuery,
        response: { 200: Type.Ref(FineTuningJobEventList), ...errorResponses(400, 401, 404) },
      },
    },
    async (request) =>
      jobs.events(request.caller.tenant, request.params.fine_tuning_job_id, request.query.after, limitOf(request.query.limit, 100)),
  );

  app.get(
    '/fine_tuning/jobs/:fine_tuning_job_id/checkpoints',
    {
      schema: {
        tags: ['fine-tuning'],
        summary: "A job's checkpoints, newest first: the ends of the three epochs before the last, each a servable adapter",
        params: JobParams,
        querystring: PageQuery,
        response: { 200: Type.Ref(FineTuningJobCheckpointList), ...errorResponses(400, 401, 404) },
      },
    },
    async (request) =>
      jobs.checkpoints(request.caller.tenant, request.params.fine_tuning_job_id, request.query.after, limitOf(request.query.limit, 100)),
  );
};
