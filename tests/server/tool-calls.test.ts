/**
 * Tool calling over HTTP against a real server (a tiny random model whose ChatML template knows no
 * tools, so the generic format is used): every forced call's arguments validate with ajv against its
 * function's schema, 8 rows at a time, greedy and sampled; parallel calls; auto; a conversation that
 * sends results back; tools beside adapters, mixes and plain rows in one batch; streaming deltas that
 * join into the whole answer; and the 400s.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { loadHfModel } from '../../src/model/index.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { uploadAdapterDir } from '../helpers/multipart.js';

const point = {
  type: 'object',
  properties: { x: { type: 'integer', minimum: -9, maximum: 9 }, y: { type: 'integer', minimum: -9, maximum: 9 } },
  required: ['x', 'y'],
  additionalProperties: false,
};

/** Functions whose every valid call is short, so forced calls end well within max_tokens. */
const FUNCTIONS: Record<string, object> = {
  order_status: {
    type: 'object',
    properties: { order_id: { type: 'string', pattern: '^[A-Z]-\\d{3}$' } },
    required: ['order_id'],
    additionalProperties: false,
  },
  weather: {
    type: 'object',
    properties: {
      city: { enum: ['Seoul', 'Busan'] },
      days: { type: 'integer', minimum: 1, maximum: 7 },
      unit: { anyOf: [{ const: 'C' }, { type: 'null' }] },
    },
    required: ['city', 'days', 'unit'],
    additionalProperties: false,
  },
  route: {
    $defs: { point },
    type: 'object',
    properties: {
      from: { $ref: '#/$defs/point' },
      to: { $ref: '#/$defs/point' },
      stops: { type: 'array', items: { type: 'boolean' }, maxItems: 2 },
    },
    required: ['from', 'to', 'stops'],
    additionalProperties: false,
  },
};

const TOOLS = Object.entries(FUNCTIONS).map(([name, parameters]) => ({
  type: 'function',
  function: { name, description: `the ${name} tool`, parameters },
}));
const ajv = new Ajv2020({ strict: false });
const validators = Object.fromEntries(Object.entries(FUNCTIONS).map(([name, schema]) => [name, ajv.compile(schema)]));

interface Call {
  id: string;
  type: string;
  function: { name: string; arguments: string };
}

/** Asserts a call names an offered function and its arguments parse and validate. */
function assertValidCall(call: Call, allowed = Object.keys(FUNCTIONS)): void {
  assert.match(call.id, /^call_[0-9a-f]{24}$/);
  assert.equal(call.type, 'function');
  assert.ok(allowed.includes(call.function.name), call.function.name);
  const validate = validators[call.function.name]!;
  assert.ok(
    validate(JSON.parse(call.function.arguments)),
    `${call.function.name}(${call.function.arguments}): ${ajv.errorsText(validate.errors)}`,
  );
}

describe('tool calling over HTTP', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ maxTokens: 160, slots: 3, maxBatch: 8 }, { model: { maxPositions: 2048 } });
    const model = loadHfModel(s.modelDir);
    for (const [i, name] of ['support', 'billing'].entries()) {
      const dir = join(tempDir(), name);
      await writeRandomAdapter(dir, model, { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'] }, 40 + i);
      assert.equal(await uploadAdapterDir(s.app, name, dir), 201);
    }
    model.weights.close();
  });
  after(() => s.close());

  const chat = (body: Record<string, unknown>) =>
    s.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: {
        model: s.serving.baseId,
        messages: [{ role: 'user', content: 'where is my order?' }],
        max_tokens: 160,
        tools: TOOLS,
        ...body,
      },
    });

  it('required and named calls: 8 rows at once, greedy and sampled, every call validates', async () => {
    const choices: Array<[unknown, string[]]> = [
      ['required', Object.keys(FUNCTIONS)],
      ...Object.keys(FUNCTIONS).map((name): [unknown, string[]] => [{ type: 'function', function: { name } }, [name]]),
    ];
    for (const [tool_choice, allowed] of choices) {
      for (const sampling of [{ temperature: 0 }, { temperature: 1 }]) {
        const rows = await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            chat({ tool_choice, parallel_tool_calls: false, ...sampling, seed: i, messages: [{ role: 'user', content: `order ${i}?` }] }),
          ),
        );
        for (const r of rows) {
          assert.equal(r.statusCode, 200, r.body);
          const [choice] = r.json().choices;
          assert.equal(choice.finish_reason, 'tool_calls', r.body);
          assert.equal(choice.message.content, null);
          assert.equal(choice.message.tool_calls.length, 1);
          assertValidCall(choice.message.tool_calls[0], allowed);
        }
      }
    }
  });

  it('parallel calls: several per answer, distinct ids, each complete one valid', async () => {
    const r = await chat({ tool_choice: 'required', temperature: 1, seed: 5, n: 4 });
    assert.equal(r.statusCode, 200, r.body);
    let most = 0;
    for (const choice of r.json().choices) {
      const calls = choice.message.tool_calls as Call[];
      most = Math.max(most, calls.length);
      assert.equal(new Set(calls.map((c) => c.id)).size, calls.length);
      // An answer cut by max_tokens ends "length"; its last call may be unfinished.
      const complete = choice.finish_reason === 'length' ? calls.slice(0, -1) : calls;
      for (const call of complete) assertValidCall(call);
    }
    assert.ok(most >= 2, 'some answer holds more than one call');
  });

  it('auto: text, or calls that validate from their opening tag on', async () => {
    const rows = await Promise.all([0, 1, 2, 3].map((seed) => chat({ temperature: 1, seed, max_tokens: 48 })));
    for (const r of rows) {
      assert.equal(r.statusCode, 200, r.body);
      const [choice] = r.json().choices;
      const calls = (choice.message.tool_calls ?? []) as Call[];
      for (const call of choice.finish_reason === 'length' ? calls.slice(0, -1) : calls) assertValidCall(call);
      if (!calls.length) assert.equal(typeof choice.message.content, 'string');
    }
  });

  it('streamed: delta.tool_calls open with index, id and name, and their argument fragments join into the whole answer', async () => {
    const body = { tool_choice: 'required', temperature: 0, parallel_tool_calls: false };
    const whole = (await chat(body)).json().choices[0];
    const r = await chat({ ...body, stream: true });
    const chunks = r.body
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice(6)).choices[0]);
    const deltas = chunks.flatMap((c) => c.delta.tool_calls ?? []);
    assert.equal(deltas[0].index, 0);
    assert.match(deltas[0].id, /^call_/);
    assert.equal(deltas[0].function.name, whole.message.tool_calls[0].function.name);
    assert.ok(deltas.length > 2, 'arguments come in fragments');
    assert.equal(
      deltas.map((d: { function: { arguments?: string } }) => d.function.arguments ?? '').join(''),
      whole.message.tool_calls[0].function.arguments,
    );
    assert.equal(chunks.at(-1).finish_reason, 'tool_calls');
    assert.ok(
      chunks.every((c) => !c.delta.content),
      'no text beside the calls',
    );
  });

  it('a conversation sends the results back (assistant tool_calls with content null, tool messages) and goes on', async () => {
    const first = (await chat({ tool_choice: { type: 'function', function: { name: 'order_status' } }, temperature: 0 })).json().choices[0];
    const call = first.message.tool_calls[0] as Call;
    const messages = [
      { role: 'user', content: 'where is my order?' },
      { role: 'assistant', content: null, tool_calls: [call] },
      { role: 'tool', tool_call_id: call.id, content: '{"status":"shipped"}' },
    ];
    const next = await chat({ messages, temperature: 0, max_tokens: 8, tool_choice: 'none' });
    assert.equal(next.statusCode, 200, next.body);
    assert.equal(typeof next.json().choices[0].message.content, 'string');
    assert.equal(next.json().choices[0].message.tool_calls, undefined);
    const again = await chat({ messages, temperature: 0, tool_choice: 'required', parallel_tool_calls: false });
    assertValidCall(again.json().choices[0].message.tool_calls[0]);
  });

  it('tool rows beside adapters, a mix and free rows in one batch', async () => {
    const forced = { tool_choice: 'required', parallel_tool_calls: false, temperature: 1 };
    const rows = await Promise.all([
      chat({ ...forced, model: 'support', seed: 1 }),
      chat({ ...forced, model: 'billing', seed: 2 }),
      chat({
        ...forced,
        adapters: [
          { name: 'support', weight: 0.5 },
          { name: 'billing', weight: 0.5 },
        ],
        seed: 3,
      }),
      chat({ ...forced, seed: 4 }),
      chat({ tools: undefined, model: 'support', temperature: 0, max_tokens: 8 }),
      chat({ tools: undefined, temperature: 0, max_tokens: 8 }),
    ]);
    for (const r of rows.slice(0, 4)) {
      assert.equal(r.statusCode, 200, r.body);
      assertValidCall(r.json().choices[0].message.tool_calls[0]);
    }
    for (const r of rows.slice(4)) {
      assert.equal(r.statusCode, 200, r.body);
      assert.equal(typeof r.json().choices[0].message.content, 'string');
    }
  });

  it('400s naming the field: legacy fields, non-text parts, choices without tools, unenforceable schemas', async () => {
    const image = { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:,' } }] };
    const audio = {
      role: 'user',
      content: [
        { type: 'text', text: 'hi' },
        { type: 'input_audio', input_audio: { data: '', format: 'wav' } },
      ],
    };
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ tools: undefined, functions: [{ name: 'f' }] }, 'functions', /use tools/],
      [{ function_call: 'auto' }, 'function_call', /use tool_choice/],
      [{ messages: [image] }, 'messages[0].content[0].type', /text only: a "image_url" content part/],
      [{ messages: [audio] }, 'messages[0].content[1].type', /"input_audio"/],
      [{ tools: undefined, tool_choice: 'required' }, 'tool_choice', /needs tools/],
      [{ tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice', /"nope"/],
      [{ tools: [TOOLS[0], TOOLS[0]] }, 'tools[1].function.name', /twice/],
      [
        { tools: [TOOLS[0], { type: 'function', function: { name: 'f', parameters: { type: 'object', minProperties: 1 } } }] },
        'tools[1].function.parameters',
        /"minProperties"/,
      ],
      [{ tool_choice: 'required', response_format: { type: 'json_object' } }, 'response_format', /cannot be combined/],
      [{ messages: [{ role: 'user', content: null }] }, 'messages[0].content', /is required/],
      [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id', /is required/],
      [
        {
          messages: [
            { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{' } }] },
          ],
        },
        'messages[0].tool_calls[0].function.arguments',
        /not JSON/,
      ],
    ];
    const before = s.serving.engine.scheduler.steps.prefill;
    for (const [body, param, message] of cases) {
      const r = await chat(body);
      assert.equal(r.statusCode, 400, `${param}: ${r.body}`);
      assert.equal(r.json().error.param, param, r.body);
      assert.match(r.json().error.message, message);
    }
    assert.equal(s.serving.engine.scheduler.steps.prefill, before, 'nothing refused ran');
  });
});
