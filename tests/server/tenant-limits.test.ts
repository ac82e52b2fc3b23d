import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { KeyRing } from '../../src/server/index.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { gateForward, until, type Gate } from '../helpers/gate.js';
import { openStream } from '../helpers/sse.js';

const key = (tenant: string) => `sk-${tenant}-0123456789`;
const KEYS = {
  keys: [
    { key: 'sk-admin-0123456789', admin: true },
    { key: key('paced'), tenant: 'paced', adapters: [], requests_per_minute: 2 },
    { key: key('metered'), tenant: 'metered', adapters: [], tokens_per_minute: 40, weight: 2 },
    { key: key('single'), tenant: 'single', adapters: [], max_concurrent: 1 },
    { key: key('open'), tenant: 'open', adapters: [] },
  ],
};

describe('keys file: weights and limits are validated at start', () => {
  const ring = (entry: Record<string, unknown>, extra: Array<Record<string, unknown>> = []) =>
    new KeyRing([{ key: 'sk-0123456789', tenant: 't', adapters: [], ...entry }, ...extra] as never);
  for (const [entry, message] of [
    [{ weight: 0 }, /entry 0 "weight" must be a positive number, not 0/],
    [{ weight: 'high' }, /"weight" must be a positive number/],
    [{ max_concurrent: 0 }, /entry 0 "max_concurrent" must be an integer of at least 1, not 0/],
    [{ max_queued: -1 }, /"max_queued" must be an integer of at least 0/],
    [{ tokens_per_minute: 1.5 }, /"tokens_per_minute" must be an integer/],
    [{ requests_per_minute: null }, /"requests_per_minute" must be an integer/],
    [{ rpm: 10 }, /entry 0 has an unknown field "rpm"/],
  ] as const)
    it(`refuses ${JSON.stringify(entry)}`, () => assert.throws(() => ring(entry), message));

  it('keys of one tenant must agree on its weight and limits', () => {
    assert.throws(
      () => ring({ weight: 2 }, [{ key: 'sk-other-0123456789', tenant: 't', adapters: [], weight: 3 }]),
      /entry 1 gives tenant "t" a weight or limits other than an earlier key of it/,
    );
    const ok = ring({ weight: 2, max_queued: 0 }, [{ key: 'sk-other-0123456789', tenant: 't', adapters: [], weight: 2, max_queued: 0 }]);
    assert.deepEqual(ok.policies.get('t'), {
      weight: 2,
      maxConcurrent: null,
      maxQueued: 0,
      tokensPerMinute: null,
      requestsPerMinute: null,
    });
  });
});

describe('tenant limits, rate-limit headers and usage over HTTP', () => {
  let s: TestServer;
  let gate: Gate;
  let url: string;
  const chat = (tenant: string, extra: Record<string, unknown> = {}) =>
    s.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      headers: { authorization: `Bearer ${key(tenant)}` },
      payload: { model: s.serving.baseId, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, ignore_eos: true, ...extra },
    });

  before(async () => {
    s = await startTestServer({}, { keys: KEYS });
    gate = gateForward(s.serving.engine, true);
    await s.app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(s.app.server.address() as AddressInfo).port}`;
  });
  after(() => s.close());

  it('requests_per_minute: 429 rate_limit_exceeded with Retry-After past it, and the request headers on every response', async () => {
    const first = await chat('paced');
    assert.equal(first.statusCode, 200, first.body);
    assert.equal(first.headers['x-ratelimit-limit-requests'], '2');
    assert.equal(first.headers['x-ratelimit-remaining-requests'], '1');
    assert.match(String(first.headers['x-ratelimit-reset-requests']), /^\d+(ms|s)$/);
    assert.equal(first.headers['x-ratelimit-limit-tokens'], undefined, 'no token limit, no token headers');
    assert.equal((await chat('paced')).statusCode, 200);
    const refused = await chat('paced');
    assert.equal(refused.statusCode, 429);
    assert.equal(refused.json().error.code, 'rate_limit_exceeded');
    assert.match(refused.json().error.message, /requests_per_minute 2/);
    assert.ok(Number(refused.headers['retry-after']) >= 1 && Number(refused.headers['retry-after']) <= 30);
    assert.equal(refused.headers['x-ratelimit-remaining-requests'], '0');
    // another tenant is not affected
    assert.equal((await chat('open')).statusCode, 200);
  });

  it('tokens_per_minute counts prompt and completion tokens; a request in the bucket’s debt waits, an admitted one is never cut', async () => {
    const first = await chat('metered', { max_tokens: 30 });
    assert.equal(first.statusCode, 200, first.body);
    assert.equal(first.json().usage.completion_tokens, 30, 'admitted: it runs to the end even past the limit');
    assert.equal(first.headers['x-ratelimit-limit-tokens'], '40');
    await until(() => s.serving.engine.scheduler.stats.running === 0);
    const refused = await chat('metered');
    assert.equal(refused.statusCode, 429);
    assert.match(refused.json().error.message, /tokens_per_minute 40/);
    assert.ok(Number(refused.headers['retry-after']) >= 1);
    assert.equal(refused.headers['x-ratelimit-remaining-tokens'], '0');
  });

  it('max_concurrent: a second request while one is in flight gets 429; the stream’s first chunk waits for the first token', async () => {
    gate.close();
    const held = await openStream(
      `${url}/v1/chat/completions`,
      { model: s.serving.baseId, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3, stream: true },
      {
        authorization: `Bearer ${key('single')}`,
      },
    );
    await until(() => gate.held() === 1);
    const refused = await chat('single');
    assert.equal(refused.statusCode, 429);
    assert.match(refused.json().error.message, /max_concurrent is 1/);
    assert.equal(held.events.length, 0, 'no chunk before the first token');
    gate.open();
    const events = await held.done;
    assert.equal(JSON.parse(events[0]!).choices[0].delta.role, 'assistant');
    assert.ok(JSON.parse(events[0]!).choices[0].delta.content !== undefined, 'the first chunk carries the first token');
    await until(() => s.serving.engine.scheduler.stats.running === 0);
    assert.equal((await chat('single')).statusCode, 200);
  });

  it('the SSE response of a limited tenant carries x-ratelimit headers', async () => {
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key('metered')}` },
      body: JSON.stringify({ model: s.serving.baseId, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, stream: true }),
    });
    await r.text();
    assert.equal(r.headers.get('x-ratelimit-limit-tokens'), '40');
  });

  it('GET /v1/usage: an admin sees every tenant, a tenant only itself; /metrics labels by tenant name, never by key', async () => {
    const all = await s.app.inject({ method: 'GET', url: '/v1/usage', headers: { authorization: 'Bearer sk-admin-0123456789' } });
    assert.equal(all.statusCode, 200, all.body);
    const byTenant = Object.fromEntries(all.json().data.map((t: { tenant: string }) => [t.tenant, t]));
    assert.deepEqual(Object.keys(byTenant).sort(), ['admin', 'metered', 'open', 'paced', 'single']);
    assert.equal(byTenant.paced.requests, 2);
    assert.equal(byTenant.paced.rate_limited, 1);
    assert.ok(byTenant.metered.completion_tokens >= 30);
    assert.ok(byTenant.metered.prompt_tokens > 0);
    assert.equal(byTenant.metered.fair_share.weight, 2);
    assert.ok(byTenant.metered.fair_share.counter > 0);
    const own = await s.app.inject({ method: 'GET', url: '/v1/usage', headers: { authorization: `Bearer ${key('open')}` } });
    assert.deepEqual(
      own.json().data.map((t: { tenant: string }) => t.tenant),
      ['open'],
    );
    assert.equal((await s.app.inject({ method: 'GET', url: '/v1/usage' })).statusCode, 401);
    const metrics = (await s.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /loraserve_tenant_requests_total\{tenant="paced"\} 2/);
    assert.match(metrics, /loraserve_tenant_rate_limited_total\{tenant="paced"\} 1/);
    assert.match(metrics, /loraserve_tenant_tokens_total\{tenant="metered",kind="completion"\} \d+/);
    assert.match(metrics, /loraserve_tenant_preemptions_total\{tenant="open"\} 0/);
    assert.ok(!metrics.includes('sk-'), 'no key in the metrics');
  });

  it('priority is accepted and must be an integer', async () => {
    assert.equal((await chat('open', { priority: -3 })).statusCode, 200);
    const bad = await chat('open', { priority: 1.5 });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.param, 'priority');
  });
});
