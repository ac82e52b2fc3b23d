import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { multipart } from '../helpers/multipart.js';
import { loadHfModel } from '../../src/model/index.js';
import { generateOpenApi } from '../../src/testing/index.js';

const chatBody = (extra: Record<string, unknown> = {}) => ({
  model: 'tiny-llama',
  messages: [{ role: 'user', content: 'hello' }],
  max_tokens: 8,
  temperature: 0,
  ...extra,
});

describe('routes', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ slots: 1, maxQueue: 2, chatBodyBytes: 4096, maxPromptTokens: 200 });
    const dir = join(tempDir(), 'ad');
    const model = loadHfModel(s.modelDir);
    await writeRandomAdapter(dir, model, { r: 4, lora_alpha: 8, target_modules: ['q_proj'] }, 9);
    await writeRandomAdapter(join(tempDir(), 'x'), model, { r: 4, lora_alpha: 8, target_modules: ['q_proj'] }, 10);
    model.weights.close();
    for (const name of ['one', 'two']) {
      const { payload, headers } = multipart(
        { name },
        {
          'adapter_config.json': readFileSync(join(dir, 'adapter_config.json')),
          'adapter_model.safetensors': readFileSync(join(dir, 'adapter_model.safetensors')),
        },
      );
      assert.equal((await s.app.inject({ method: 'POST', url: '/v1/adapters', payload, headers })).statusCode, 201);
    }
  });
  after(() => s.close());
  const post = (url: string, payload: unknown) => s.app.inject({ method: 'POST', url, payload: payload as object });

  it('chat completion: OpenAI shape, usage counts, model names the adapter', async () => {
    const r = await post('/v1/chat/completions', chatBody({ model: 'one' }));
    assert.equal(r.statusCode, 200);
    const b = r.json();
    assert.match(b.id, /^chatcmpl-/);
    assert.equal(b.object, 'chat.completion');
    assert.equal(b.model, 'one');
    assert.equal(b.choices[0].message.role, 'assistant');
    assert.equal(b.usage.prompt_tokens, s.serving.engine.tokenizer.applyChatTemplate([{ role: 'user', content: 'hello' }]).length);
    assert.equal(b.usage.total_tokens, b.usage.prompt_tokens + b.usage.completion_tokens);
    assert.ok(['stop', 'length'].includes(b.choices[0].finish_reason));
    assert.ok(r.headers['x-request-id']);
  });

  it('streams Server-Sent Events that concatenate to the non-streamed answer, with usage on request', async () => {
    const plain = (await post('/v1/chat/completions', chatBody())).json();
    const r = await post('/v1/chat/completions', chatBody({ stream: true, stream_options: { include_usage: true } }));
    assert.equal(r.statusCode, 200);
    assert.match(String(r.headers['content-type']), /text\/event-stream/);
    const events = r.body
      .split('\n\n')
      .filter(Boolean)
      .map((e) => e.replace(/^data: /, ''));
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
    const text = chunks.flatMap((c) => c.choices.map((ch: { delta: { content?: string } }) => ch.delta.content ?? '')).join('');
    assert.equal(text, plain.choices[0].message.content);
    assert.equal(chunks.at(-2).choices[0].finish_reason, plain.choices[0].finish_reason);
    // The same prompt again: its first full block now comes from the prefix cache.
    const { prompt_tokens_details: details, ...usage } = chunks.at(-1).usage;
    const { prompt_tokens_details: plainDetails, ...plainUsage } = plain.usage;
    assert.deepEqual(usage, plainUsage);
    assert.deepEqual([plainDetails.cached_tokens, details.cached_tokens], [0, 16]);
  });

  it('text completions: raw prompt, echo, stop', async () => {
    const r = await post('/v1/completions', { model: 'two', prompt: 'Once upon', max_tokens: 6, temperature: 0, echo: true });
    assert.equal(r.statusCode, 200);
    assert.equal(r.json().object, 'text_completion');
    assert.ok(r.json().choices[0].text.startsWith('Once upon'));
    const free = (await post('/v1/completions', { model: 'two', prompt: 'Once upon', max_tokens: 12, temperature: 0 })).json().choices[0]
      .text as string;
    const stop = free.slice(4, 6);
    const stopped = (await post('/v1/completions', { model: 'two', prompt: 'Once upon', max_tokens: 12, temperature: 0, stop })).json();
    assert.equal(stopped.choices[0].text, free.slice(0, free.indexOf(stop)));
    assert.equal(stopped.choices[0].finish_reason, 'stop');
    const streamed = await post('/v1/completions', { model: 'two', prompt: 'Once upon', max_tokens: 12, temperature: 0, stream: true });
    const text = streamed.body
      .split('\n\n')
      .filter((e) => e && e !== 'data: [DONE]')
      .map((e) => JSON.parse(e.slice(6)).choices[0].text)
      .join('');
    assert.equal(text, free);
  });

  const errors: Array<[string, () => Promise<{ statusCode: number; json(): any }>, number, string, string | null]> = [
    ['unknown model lists what exists', () => post('/v1/chat/completions', chatBody({ model: 'nope' })), 404, 'model_not_found', 'model'],
    ['empty messages', () => post('/v1/chat/completions', chatBody({ messages: [] })), 400, 'invalid_request', 'messages'],
    ['missing model', () => post('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }] }), 400, 'invalid_request', 'model'],
    [
      'bad role',
      () => post('/v1/chat/completions', chatBody({ messages: [{ role: 'robot', content: 'x' }] })),
      400,
      'invalid_request',
      null,
    ],
    ['temperature out of range', () => post('/v1/chat/completions', chatBody({ temperature: 3 })), 400, 'invalid_request', 'temperature'],
    ['n over --max-n', () => post('/v1/chat/completions', chatBody({ n: 9 })), 400, 'unsupported_parameter', 'n'],
    [
      'a response_format schema keyword the grammar cannot enforce',
      () =>
        post(
          '/v1/chat/completions',
          chatBody({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { not: {} } } } }),
        ),
      400,
      'unsupported_json_schema',
      'response_format',
    ],
    [
      'a field the server does not implement (logit_bias) is refused, never ignored',
      () => post('/v1/chat/completions', chatBody({ logit_bias: { 5: 1 } })),
      400,
      'invalid_request',
      'logit_bias',
    ],
    [
      'an unknown completions field',
      () => post('/v1/completions', { model: 'tiny-llama', prompt: 'x', logit_bias: { 5: 1 } }),
      400,
      'invalid_request',
      'logit_bias',
    ],
    ['best_of', () => post('/v1/completions', { model: 'tiny-llama', prompt: 'x', best_of: 3 }), 400, 'unsupported_parameter', 'best_of'],
    [
      'max_tokens over the server cap',
      () => post('/v1/chat/completions', chatBody({ max_tokens: 100000 })),
      400,
      'max_tokens_too_large',
      'max_tokens',
    ],
    ['empty prompt', () => post('/v1/completions', { model: 'tiny-llama', prompt: '' }), 400, 'empty_prompt', 'prompt'],
    [
      'prompt over the server limit',
      () => post('/v1/completions', { model: 'tiny-llama', prompt: 'x'.repeat(300) }),
      400,
      'prompt_too_long',
      'prompt',
    ],
    [
      'chat prompt over the server limit',
      () => post('/v1/chat/completions', chatBody({ messages: [{ role: 'user', content: 'x'.repeat(300) }] })),
      400,
      'prompt_too_long',
      'messages',
    ],
    [
      'invalid JSON',
      () =>
        s.app.inject({ method: 'POST', url: '/v1/chat/completions', payload: '{oops', headers: { 'content-type': 'application/json' } }),
      400,
      'invalid_json',
      null,
    ],
    [
      'chat body over the limit',
      () => post('/v1/chat/completions', chatBody({ messages: [{ role: 'user', content: 'x'.repeat(5000) }] })),
      413,
      'payload_too_large',
      null,
    ],
    ['unknown route', () => s.app.inject({ method: 'GET', url: '/v2/nothing' }), 404, 'not_found', null],
    ['unknown adapter', () => s.app.inject({ method: 'GET', url: '/v1/adapters/ghost' }), 404, 'adapter_not_found', 'name'],
    ['deleting an unknown adapter', () => s.app.inject({ method: 'DELETE', url: '/v1/adapters/ghost' }), 404, 'adapter_not_found', 'name'],
    [
      'vLLM load without --lora-root',
      () => post('/v1/load_lora_adapter', { lora_name: 'p', lora_path: '/tmp' }),
      403,
      'path_outside_root',
      'lora_path',
    ],
  ];
  for (const [what, send, status, code, param] of errors) {
    it(`${what} → ${status} ${code}`, async () => {
      const r = await send();
      assert.equal(r.statusCode, status, JSON.stringify(r.json()));
      const e = r.json().error;
      assert.equal(e.code, code);
      assert.equal(typeof e.message, 'string');
      assert.equal(typeof e.type, 'string');
      if (param) assert.equal(e.param, param);
    });
  }

  it('the 404 for an unknown model names the models that exist', async () => {
    assert.match((await post('/v1/chat/completions', chatBody({ model: 'nope' }))).json().error.message, /available: tiny-llama, one, two/);
  });

  it('unloading an adapter that is serving answers 409; every slot pinned makes others wait; a full queue answers 429 with Retry-After', async () => {
    const long = post('/v1/chat/completions', chatBody({ model: 'one', max_tokens: 60, temperature: 1, seed: 1 }));
    while (s.serving.engine.scheduler.stats.running === 0) await new Promise((r) => setImmediate(r));
    const busy = await post('/v1/adapters/one/unload', {});
    assert.equal(busy.statusCode, 409);
    assert.equal(busy.json().error.code, 'adapter_in_use');
    // The single slot is pinned by "one": requests for "two" wait; beyond max-queue they get 429.
    const waiting = [post('/v1/chat/completions', chatBody({ model: 'two' })), post('/v1/chat/completions', chatBody({ model: 'two' }))];
    while (s.serving.adapters.occupancy().queued < 2) await new Promise((r) => setImmediate(r));
    const rejected = await post('/v1/chat/completions', chatBody({ model: 'two' }));
    assert.equal(rejected.statusCode, 429);
    assert.equal(rejected.json().error.code, 'queue_full');
    assert.equal(rejected.headers['retry-after'], '1');
    assert.equal((await long).statusCode, 200);
    for (const w of await Promise.all(waiting)) assert.equal(w.statusCode, 200);
  });

  it('a client that disconnects cancels its generation and frees the row', async () => {
    await s.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (s.app.server.address() as { port: number }).port;
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { 'content-type': 'application/json' },
    });
    req.on('error', () => {});
    req.end(JSON.stringify(chatBody({ model: 'one', max_tokens: 64, stream: true, temperature: 1 })));
    await new Promise<void>((resolve) => req.on('response', (res) => res.once('data', () => resolve())));
    req.destroy();
    await s.serving.engine.scheduler.idle();
    assert.equal(s.serving.engine.scheduler.stats.running, 0);
    assert.equal(s.serving.adapters.occupancy().pinned, 0);
    const metrics = (await s.app.inject({ method: 'GET', url: '/metrics' })).body;
    const completion = Number(metrics.match(/loraserve_tokens_total\{adapter="one",kind="completion"\} (\d+)/)?.[1]);
    assert.ok(Number.isFinite(completion));
  });

  it('metrics expose per-adapter counters, latency histograms and the gateway (vllm:*) gauges', async () => {
    const m = (await s.app.inject({ method: 'GET', url: '/metrics' })).body;
    for (const name of [
      'loraserve_requests_total{adapter="one",endpoint="chat",status="200"}',
      'loraserve_time_to_first_token_seconds_bucket',
      'loraserve_inter_token_latency_seconds_bucket',
      'loraserve_adapter_slots 1',
      'vllm:num_requests_waiting',
      'vllm:gpu_cache_usage_perc',
      'vllm:lora_requests_info{max_lora="1"',
    ]) {
      assert.ok(m.includes(name), `metrics lack ${name}`);
    }
  });

  it("a request the server's limits refuse is counted under its 400 in the request metrics", async () => {
    const refused = async (endpoint: string) => {
      const m = (await s.app.inject({ method: 'GET', url: '/metrics' })).body;
      const line = `loraserve_requests_total{adapter="two",endpoint="${endpoint}",status="400"} `;
      return Number(
        m
          .split('\n')
          .find((l) => l.startsWith(line))
          ?.slice(line.length) ?? 0,
      );
    };
    const before = { chat: await refused('chat'), completions: await refused('completions') };
    const tooLong = await post('/v1/completions', { model: 'two', prompt: 'x'.repeat(300) });
    assert.equal(tooLong.json().error.code, 'prompt_too_long');
    const overCap = await post('/v1/chat/completions', chatBody({ model: 'two', max_tokens: 100000 }));
    assert.equal(overCap.json().error.code, 'max_tokens_too_large');
    assert.equal(await refused('completions'), before.completions + 1);
    assert.equal(await refused('chat'), before.chat + 1);
  });

  it('shutting down: /ready and new requests answer 503', async () => {
    s.serving.shuttingDown = true;
    try {
      assert.equal((await s.app.inject({ method: 'GET', url: '/ready' })).statusCode, 503);
      const r = await post('/v1/chat/completions', chatBody());
      assert.equal(r.statusCode, 503);
      assert.equal(r.json().error.code, 'shutting_down');
      assert.equal((await s.app.inject({ method: 'GET', url: '/health' })).statusCode, 200);
    } finally {
      s.serving.shuttingDown = false;
    }
  });

  it('Swagger UI is served at /docs and the committed openapi/openapi.json matches the routes', async () => {
    assert.equal((await s.app.inject({ method: 'GET', url: '/docs/' })).statusCode, 200);
    const committed = JSON.parse(readFileSync(new URL('../../openapi/openapi.json', import.meta.url), 'utf8'));
    assert.deepEqual(await generateOpenApi(), committed, 'openapi/openapi.json is stale: run npm run openapi');
  });
});
