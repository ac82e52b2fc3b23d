import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { gateForward, until, type Gate } from '../helpers/gate.js';

// Promise 5 (README, Reliability): above the queue limit the server answers 429 with
// Retry-After; what it already admitted runs to completion untouched; afterwards it serves
// normally. The engine is held at a gate while the queue fills, so the test knows exactly which
// requests were admitted.
describe('overload', () => {
  let s: TestServer;
  let gate: Gate;
  const maxQueue = 3;
  const chat = () =>
    s.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { model: s.serving.baseId, messages: [{ role: 'user', content: 'hi' }], max_tokens: 12, ignore_eos: true },
    });

  before(async () => {
    s = await startTestServer({ maxBatch: 1, maxQueue });
    gate = gateForward(s.serving.engine);
  });
  after(() => s.close());

  it('answers 429 + Retry-After above the queue limit, finishes every admitted request, then recovers', async () => {
    // One request in the held prefill, then `maxQueue` waiting behind it.
    const admitted = [chat()];
    await until(() => gate.held() === 1);
    for (let i = 1; i <= maxQueue; i++) {
      admitted.push(chat());
      await until(() => s.serving.engine.scheduler.stats.waiting === i);
    }
    const burst = await Promise.all(Array.from({ length: 20 }, chat));
    for (const r of burst) {
      assert.equal(r.statusCode, 429);
      assert.equal(r.json().error.code, 'queue_full');
      assert.ok(Number(r.headers['retry-after']) >= 1);
    }
    gate.open();
    for (const r of await Promise.all(admitted)) {
      assert.equal(r.statusCode, 200, r.body);
      assert.equal(r.json().usage.completion_tokens, 12);
      assert.equal(r.json().choices[0].finish_reason, 'length');
    }
    assert.equal(s.serving.queueDepth(), 0);
    const after = await Promise.all(Array.from({ length: maxQueue }, chat));
    assert.deepEqual(
      after.map((r) => r.statusCode),
      after.map(() => 200),
    );
    const metrics = (await s.app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, new RegExp(`loraserve_requests_total\\{adapter="${s.serving.baseId}",endpoint="chat",status="429"\\} 20`));
    assert.match(
      metrics,
      new RegExp(`loraserve_requests_total\\{adapter="${s.serving.baseId}",endpoint="chat",status="200"\\} ${maxQueue + 1 + maxQueue}`),
    );
  });
});
