import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ForwardInput, ForwardOutput } from '../../src/engine/index.js';
import { startTestServer } from '../helpers/server.js';

describe('a provider fault mid-run', () => {
  it("fails that step's requests with a 500 engine_error, keeps serving, and /ready reports it until a pass succeeds", async () => {
    const s = await startTestServer();
    try {
      const engine = s.serving.engine;
      const forward = engine.forward.bind(engine);
      let faults = 1;
      engine.forward = async (input: ForwardInput): Promise<ForwardOutput> => {
        if (faults-- > 0) throw new Error('device lost: VK_ERROR_DEVICE_LOST at /secret/path');
        return forward(input);
      };
      const chat = () =>
        s.app.inject({
          method: 'POST',
          url: '/v1/chat/completions',
          payload: { model: s.serving.baseId, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 },
        });
      const failed = await chat();
      assert.equal(failed.statusCode, 500);
      assert.equal(failed.json().error.code, 'engine_error');
      assert.doesNotMatch(failed.body, /secret|VK_ERROR/, 'a 5xx names no internals');
      const ready = await s.app.inject({ method: 'GET', url: '/ready' });
      assert.equal(ready.statusCode, 503);
      assert.equal(ready.json().error.code, 'engine_unhealthy');
      assert.equal((await s.app.inject({ method: 'GET', url: '/health' })).statusCode, 200, 'the process is up');
      const next = await chat();
      assert.equal(next.statusCode, 200, next.body);
      assert.equal((await s.app.inject({ method: 'GET', url: '/ready' })).statusCode, 200, 'ready again once a pass succeeds');
    } finally {
      await s.close();
    }
  });
});
