import { Type } from '@sinclair/typebox';

export const TenantUsage = Type.Object(
  {
    tenant: Type.String({ description: 'The tenant name from the keys file (never a key).' }),
    requests: Type.Integer({ description: 'Completion requests admitted since start.' }),
    rate_limited: Type.Integer({ description: 'Requests refused with 429 (its limits or the server queue).' }),
    prompt_tokens: Type.Integer({ description: 'Prompt tokens read, cached ones included.' }),
    cached_tokens: Type.Integer({
      description: 'Prompt tokens copied rather than computed (the prefix cache, and choices of one prompt).',
    }),
    completion_tokens: Type.Integer(),
    preemptions: Type.Integer({ description: 'Times one of its running requests was paused for another tenant.' }),
    fair_share: Type.Object(
      {
        weight: Type.Number({ description: 'Its share of the batch under contention, relative to the other tenants.' }),
        counter: Type.Number({ description: 'Virtual token counter: (prompt tokens + 2 × completion tokens) served ÷ weight.' }),
        running: Type.Integer({ description: 'Requests in the running batch now.' }),
        waiting: Type.Integer({ description: 'Requests waiting for a batch row now (paused ones included).' }),
      },
      { description: 'Where the tenant stands in fair scheduling now.' },
    ),
  },
  { $id: 'TenantUsage' },
);

export const UsageList = Type.Object(
  {
    object: Type.Literal('list'),
    since: Type.String({ description: 'When the server started (ISO 8601): the totals count from then.' }),
    data: Type.Array(Type.Ref(TenantUsage)),
  },
  { $id: 'UsageList' },
);
