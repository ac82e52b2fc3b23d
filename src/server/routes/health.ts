import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { errorResponses } from '../schemas/common.js';
import { EngineUnhealthyError, ShuttingDownError } from '../../errors.js';
import { checkMetricsAccess, renderMetrics } from '../metrics-endpoint.js';

/** Liveness, readiness and Prometheus metrics (no API key needed). */
export const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/health',
    { schema: { tags: ['health'], summary: 'The process is up', response: { 200: Type.Object({ status: Type.Literal('ok') }) } } },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/ready',
    {
      schema: {
        tags: ['health'],
        summary: 'The model is loaded and the server admits requests',
        response: { 200: Type.Object({ status: Type.Literal('ready'), model: Type.String() }), ...errorResponses(503) },
      },
    },
    async (_request, reply) => {
      if (app.serving.shuttingDown) throw new ShuttingDownError('the server is shutting down');
      const { failures } = app.serving.engine.scheduler;
      if (failures.consecutive > 0)
        throw new EngineUnhealthyError(
          `the last ${failures.consecutive} forward pass(es) failed on the ${app.serving.engine.options.provider} provider; requests in those steps got engine_error`,
        );
      return reply.send({ status: 'ready' as const, model: app.serving.baseId });
    },
  );

  // With --metrics-port the metrics live on their own listener (metrics-endpoint.ts), not here.
  if (app.serving.config.metricsPort !== null) return;
  app.get(
    '/metrics',
    {
      schema: {
        tags: ['health'],
        summary:
          'Prometheus metrics, including the Gateway API Inference Extension (vllm:*) ones; with --metrics-key it needs that bearer key',
        produces: ['text/plain'],
        response: { 200: Type.String(), ...errorResponses(401, 403) },
      },
    },
    async (request, reply) => {
      checkMetricsAccess(app.serving, request.headers.authorization);
      const { contentType, body } = await renderMetrics(app.serving);
      return reply.type(contentType).send(body);
    },
  );
};
