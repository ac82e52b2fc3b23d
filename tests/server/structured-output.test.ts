/**
 * response_format over HTTP (app.inject) and through the official openai client on a real socket:
 * json_schema and json_object answers that parse and validate, in chat and text completions,
 * streamed and not, n > 1; and the 400s for what structured output cannot enforce.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv } from 'ajv';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { startTestServer, type TestServer } from '../helpers/server.js';

const ORDER = {
  type: 'object',
  properties: {
    item: { enum: ['tea', 'coffee', 'juice'] },
    qty: { type: 'integer', minimum: 1, maximum: 9 },
    note: { anyOf: [{ type: 'string', maxLength: 6 }, { type: 'null' }] },
  },
  required: ['item', 'qty', 'note'],
  additionalProperties: false,
};
const validOrder = new Ajv().compile(ORDER);
const orderFormat = { type: 'json_schema', json_schema: { name: 'order', schema: ORDER, strict: true } };

describe('structured output over HTTP', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ maxTokens: 128 });
  });
  after(() => s.close());

  const chat = (body: Record<string, unknown>) =>
    s.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { model: s.serving.baseId, messages: [{ role: 'user', content: 'order?' }], max_tokens: 128, ...body },
    });

  it('chat json_schema: every choice of n parses and validates, greedy and sampled', async () => {
    for (const sampling of [{ temperature: 0 }, { temperature: 1, seed: 3 }]) {
      const r = await chat({ response_format: orderFormat, n: 3, ...sampling });
      assert.equal(r.statusCode, 200, r.body);
      for (const choice of r.json().choices) {
        assert.equal(choice.finish_reason, 'stop');
        assert.ok(validOrder(JSON.parse(choice.message.content)), choice.message.content);
      }
    }
  });

  it('streamed, the deltas join into the same valid answer', async () => {
    const whole = (await chat({ response_format: orderFormat, temperature: 0 })).json().choices[0].message.content;
    const r = await chat({ response_format: orderFormat, temperature: 0, stream: true });
    const text = r.body
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice(6)).choices[0]?.delta.content ?? '')
      .join('');
    assert.equal(text, whole);
  });

  it('text completions take response_format too (json_object: an object)', async () => {
    const r = await s.app.inject({
      method: 'POST',
      url: '/v1/completions',
      payload: { model: s.serving.baseId, prompt: 'JSON:', max_tokens: 128, response_format: { type: 'json_object' }, temperature: 0 },
    });
    assert.equal(r.statusCode, 200, r.body);
    const { text, finish_reason } = r.json().choices[0];
    if (finish_reason === 'stop') assert.equal(Object.prototype.toString.call(JSON.parse(text)), '[object Object]');
    else assert.equal(text[0], '{', `cut off at max_tokens, still an object so far: ${text}`);
  });

  it('refuses what it cannot enforce with 400 unsupported_json_schema naming it; nothing runs', async () => {
    const before = s.serving.engine.scheduler.steps.prefill;
    const r = await chat({
      response_format: {
        type: 'json_schema',
        json_schema: { name: 'x', schema: { type: 'array', uniqueItems: true, items: { type: 'integer' } } },
      },
    });
    assert.equal(r.statusCode, 400);
    assert.equal(r.json().error.code, 'unsupported_json_schema');
    assert.equal(r.json().error.param, 'response_format');
    assert.match(r.json().error.message, /"uniqueItems" at \//);
    assert.equal(s.serving.engine.scheduler.steps.prefill, before);
  });

  it('400s for a json_schema without a schema, an unknown type, and min_tokens / ignore_eos beside a grammar', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ response_format: { type: 'json_schema' } }, 'unsupported_json_schema'],
      [{ response_format: { type: 'yaml' } }, 'invalid_request'],
      [{ response_format: { type: 'json_object' }, min_tokens: 3 }, 'unsupported_parameter'],
      [{ response_format: { type: 'json_object' }, ignore_eos: true }, 'unsupported_parameter'],
    ];
    for (const [body, code] of cases) {
      const r = await chat(body);
      assert.equal(r.statusCode, 400, JSON.stringify(body));
      assert.equal(r.json().error.code, code, `${JSON.stringify(body)}: ${r.body}`);
    }
  });
});

describe('structured output through the official openai client', () => {
  let s: TestServer;
  let client: OpenAI;
  before(async () => {
    s = await startTestServer({ maxTokens: 128 });
    await s.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = s.app.server.address() as { port: number };
    client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  after(() => s.close());

  it('chat.completions.parse with zodResponseFormat returns the parsed object', async () => {
    const Weather = z.object({
      city: z.enum(['Seoul', 'Busan']),
      temp: z.number().int().min(-50).max(60),
      sunny: z.boolean(),
      note: z.string().max(10).nullable(),
    });
    for (const seed of [1, 2, 3]) {
      const done = await client.chat.completions.parse({
        model: s.serving.baseId,
        messages: [{ role: 'user', content: 'weather?' }],
        response_format: zodResponseFormat(Weather, 'weather'),
        temperature: 1,
        seed,
        max_tokens: 128,
      });
      const parsed = done.choices[0]!.message.parsed;
      assert.ok(parsed, done.choices[0]!.message.content ?? '');
      assert.deepEqual(Weather.parse(parsed), parsed);
    }
  });
});
