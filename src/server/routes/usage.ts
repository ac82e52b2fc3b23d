import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { errorResponses } from '../schemas/common.js';
import { UsageList } from '../schemas/usage.js';

/** Per-tenant usage since start: an admin key sees every tenant, a tenant key only its own. */
export const usageRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const since = new Date().toISOString();
  app.get(
    '/usage',
    {
      schema: {
        tags: ['health'],
        summary: "Tokens, requests, 429s and preemptions per tenant since start, with each tenant's fair-share state",
        response: { 200: Type.Ref(UsageList), ...errorResponses(401) },
      },
    },
    async (request) => {
      const caller = request.caller;
      const rows = app.serving.tenantUsage().filter((t) => caller.admin || t.tenant === caller.tenant);
      return {
        object: 'list' as const,
        since,
        data: rows.map((t) => ({
          tenant: t.tenant,
          requests: t.requests,
          rate_limited: t.rateLimited,
          prompt_tokens: t.promptTokens,
          cached_tokens: t.cachedTokens,
          completion_tokens: t.completionTokens,
          preemptions: t.preemptions,
          fair_share: { weight: t.weight, counter: t.counter, running: t.running, waiting: t.waiting },
        })),
      };
    },
  );
};
