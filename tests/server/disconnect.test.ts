import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { multipart } from '../helpers/multipart.js';
import { openStream } from '../helpers/sse.js';
import { gateForward, until, type Gate } from '../helpers/gate.js';
import { loadHfModel } from '../../src/model/index.js';
import { CONFIG_FILE, WEIGHTS_FILE } from '../../src/lora/index.js';

// Promise 4 (README, Reliability): a client that closes its socket frees its batch row and its
// adapter pin within one engine step. Measured in engine steps (the scheduler's counter), with
// the engine held at a gate while the disconnect lands, never with a timer.
describe('client disconnects', () => {
  let s: TestServer;
  let url: string;
  let gate: Gate;
  const steps = () => s.serving.engine.scheduler.steps.prefill + s.serving.engine.scheduler.steps.decode;
  const running = () => s.serving.engine.scheduler.stats.running;
  const pinned = () => s.serving.adapters.occupancy().pinned;
  const body = (model: string, extra: Record<string, unknown> = {}) => ({
    model,
    messages: [{ role: 'user', content: 'hello' }],
    max_tokens: 200,
    ignore_eos: true,
    stream: true,
    ...extra,
  });

  before(async () => {
    s = await startTestServer({ slots: 1, maxTokens: 200 });
    const dir = join(tempDir(), 'a');
    const model = loadHfModel(s.modelDir);
    await writeRandomAdapter(dir, model, { r: 4, lora_alpha: 8, target_modules: ['q_proj'] }, 5);
    model.weights.close();
    for (const name of ['a', 'b']) {
      const { payload, headers } = multipart(
        { name },
        { [CONFIG_FILE]: readFileSync(join(dir, CONFIG_FILE)), [WEIGHTS_FILE]: readFileSync(join(dir, WEIGHTS_FILE)) },
      );
      assert.equal((await s.app.inject({ method: 'POST', url: '/v1/adapters', payload, headers })).statusCode, 201);
    }
    url = `${await s.app.listen({ host: '127.0.0.1', port: 0 })}/v1/chat/completions`;
    gate = gateForward(s.serving.engine, true);
  });
  after(() => s.close());

  it('a stream closed mid-generation frees its row and its adapter pin within one engine step', async () => {
    const other = await openStream(url, body(s.serving.baseId));
    const leaving = await openStream(url, body('a'));
    await Promise.all([other.received(3), leaving.received(3)]);
    gate.close();
    await until(() => gate.held() === 1);
    assert.equal(running(), 2);
    assert.equal(pinned(), 1);
    leaving.abort();
    await until(() => s.serving.inFlight.size === 1); // the server has seen the socket close
    const noticed = steps();
    gate.open();
    await until(() => running() === 1 && pinned() === 0);
    assert.ok(steps() - noticed <= 1, `freed ${steps() - noticed} steps after the disconnect was noticed`);
    const events = await other.done;
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(JSON.parse(events.at(-2)!).choices[0].finish_reason, 'length');
  });

  it('a request waiting for an adapter slot leaves the queue when its client goes away', async () => {
    gate.close();
    const holder = await openStream(url, body('a'));
    await until(() => gate.held() === 1);
    // The only slot is pinned by "a": a request for "b" waits for it.
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/json' } });
    req.on('error', () => {});
    req.end(JSON.stringify(body('b', { stream: false })));
    await until(() => s.serving.adapters.occupancy().queued === 1);
    req.destroy();
    await until(() => s.serving.adapters.occupancy().queued === 0 && s.serving.inFlight.size === 1);
    gate.open();
    assert.equal((await holder.done).at(-1), '[DONE]');
    await until(() => pinned() === 0 && running() === 0);
  });
});
