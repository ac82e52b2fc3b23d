/**
 * The README's tool-calling example on the embedded demo: customer_service forced to call
 * order_status(order_id) answers with one call whose arguments follow the schema, and the result
 * sent back gets a text answer. The demo was never trained on tools, so only the form is asserted:
 * the grammar makes it, whatever order id the model picks.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { buildApp, DEFAULTS, Serving, type App } from '../../src/server/index.js';
import { tempDir } from '../helpers/adapters.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const ORDER_STATUS = {
  type: 'function',
  function: {
    name: 'order_status',
    description: '주문 상태 조회',
    parameters: {
      type: 'object',
      properties: { order_id: { type: 'string', pattern: '^[0-9]{5}$' } },
      required: ['order_id'],
      additionalProperties: false,
    },
  },
};

describe('demo: customer_service calls order_status', () => {
  let serving: Serving;
  let app: App;
  before(async () => {
    const store = tempDir();
    mkdirSync(join(store, 'customer_service'));
    for (const f of ['adapter_config.json', 'adapter_model.safetensors'])
      copyFileSync(join(root, 'adapters/customer_service', f), join(store, 'customer_service', f));
    serving = await Serving.create(
      { ...DEFAULTS, modelDir: join(root, 'models/loraserve-demo'), adaptersDir: store, slots: 1, maxRank: 32 },
      null,
    );
    app = await buildApp(serving);
  });
  after(async () => {
    await app.close();
    await serving.close();
  });

  const chat = (body: Record<string, unknown>) =>
    app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { model: 'customer_service', temperature: 0, tools: [ORDER_STATUS], ...body },
    });

  it('a forced call fits the context, validates, and its result gets an answer', async () => {
    const question = { role: 'user', content: '주문번호 12345 배송 상태 알려주세요' };
    const r = await chat({ messages: [question], tool_choice: 'required' });
    assert.equal(r.statusCode, 200, r.body);
    const [choice] = r.json().choices;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, null);
    const [call] = choice.message.tool_calls;
    assert.equal(call.function.name, 'order_status');
    assert.ok(new Ajv().validate(ORDER_STATUS.function.parameters, JSON.parse(call.function.arguments)), call.function.arguments);
    const next = await chat({
      messages: [
        question,
        { role: 'assistant', content: null, tool_calls: [call] },
        { role: 'tool', tool_call_id: call.id, content: '{"status":"배송 중"}' },
      ],
    });
    assert.equal(next.statusCode, 200, next.body);
    assert.equal(typeof next.json().choices[0].message.content, 'string');
  });
});
