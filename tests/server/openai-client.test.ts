import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('the official openai npm client against a listening server', () => {
  let s: TestServer;
  let client: OpenAI;
  before(async () => {
    s = await startTestServer({}, { keys: { keys: [{ key: 'sk-test-0123456789', admin: true }] } });
    await s.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = s.app.server.address() as { port: number };
    client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'sk-test-0123456789', maxRetries: 0 });
  });
  after(() => s.close());

  it('lists models', async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids, [s.serving.baseId]);
  });

  it('completes a chat, and streams the same answer', async () => {
    const params = {
      model: s.serving.baseId,
      messages: [{ role: 'user' as const, content: '안녕하세요' }],
      max_tokens: 10,
      temperature: 0,
    };
    const done = await client.chat.completions.create(params);
    assert.equal(done.object, 'chat.completion');
    assert.equal(done.usage?.completion_tokens, 10);
    const stream = await client.chat.completions.create({ ...params, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    assert.equal(text, done.choices[0]!.message.content);
  });

  it('surfaces server errors as APIError with status and code', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: 'missing', messages: [{ role: 'user', content: 'x' }] }),
      (err: InstanceType<typeof OpenAI.APIError>) => {
        assert.equal(err.status, 404);
        assert.equal(err.code, 'model_not_found');
        return true;
      },
    );
    const anonymous = new OpenAI({ baseURL: client.baseURL, apiKey: 'sk-wrong-key-000', maxRetries: 0 });
    await assert.rejects(anonymous.models.list(), { status: 401 });
  });
});
