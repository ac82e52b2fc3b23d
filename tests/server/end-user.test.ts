import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe("OpenAI's user field", () => {
  let s: TestServer;
  const logs: string[] = [];
  before(async () => {
    s = await startTestServer({}, { logLines: logs });
  });
  after(() => s.close());

  it('is recorded in the request log with the model, not dropped', async () => {
    const r = await s.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { model: s.serving.baseId, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, user: 'end-user-42' },
    });
    assert.equal(r.statusCode, 200, r.body);
    const line = logs.map((l) => JSON.parse(l)).find((l) => l.user === 'end-user-42');
    assert.ok(line, 'a log line names the end user');
    assert.equal(line.model, s.serving.baseId);
    assert.ok(line.reqId !== undefined, 'on the request’s own logger');
  });
});
