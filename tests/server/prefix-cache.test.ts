import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tempDir, writeRandomAdapter } from '../helpers/adapters.js';
import { uploadAdapterDir } from '../helpers/multipart.js';
import { Expected } from '../helpers/expected.js';
import { loadHfModel } from '../../src/model/index.js';

/**
 * The prefix cache as clients see it: OpenAI's usage.prompt_tokens_details.cached_tokens (streamed
 * usage too), vLLM's counters on /metrics, and two replicas sharing one adapter store: each keys
 * its blocks by the version stamp the store wrote, so after a replacement neither uses blocks of
 * the version it no longer serves.
 */
describe('prefix cache over HTTP, two replicas on one store', () => {
  let a: TestServer;
  let b: TestServer;
  let expected: Expected;
  const dirs: string[] = [];
  const system = 'You are the support assistant of a shop that sells tea. Answer briefly and politely, in the language of the question.';
  const messages = (q: string) => [
    { role: 'system', content: system },
    { role: 'user', content: q },
  ];

  before(async () => {
    a = await startTestServer({ maxTokens: 8 });
    b = await startTestServer({ maxTokens: 8, adaptersDir: a.adaptersDir });
    expected = await Expected.create(a.modelDir);
    const model = loadHfModel(a.modelDir);
    for (const [i, r] of [8, 4].entries()) {
      dirs.push(join(tempDir(), `tea${i}`));
      await writeRandomAdapter(dirs[i]!, model, { r, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'] }, 40 + i);
    }
    model.weights.close();
    assert.equal(await uploadAdapterDir(a.app, 'tea', dirs[0]!), 201);
  });
  after(async () => {
    await a.close();
    await b.close();
    await expected.close();
  });

  const chat = async (s: TestServer, model: string, q: string, extra: Record<string, unknown> = {}) => {
    const r = await s.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { model, messages: messages(q), max_tokens: 6, temperature: 0, ...extra },
    });
    assert.equal(r.statusCode, 200, r.body);
    // A finished request's blocks are kept at the engine's next step.
    await s.serving.engine.scheduler.idle();
    return r;
  };
  const cachedTokens = (body: { usage: { prompt_tokens_details: { cached_tokens: number } } }) =>
    body.usage.prompt_tokens_details.cached_tokens;

  it('a repeated system prompt is reported as cached tokens, streamed usage too, and counted on /metrics', async () => {
    assert.equal(cachedTokens((await chat(a, 'tea', 'hello')).json()), 0);
    const second = (await chat(a, 'tea', 'what teas do you sell?')).json();
    assert.ok(cachedTokens(second) >= 32, `cached ${cachedTokens(second)}`);
    assert.equal(cachedTokens(second) % 16, 0);
    assert.equal(second.choices[0].message.content, await expected.answer(dirs[0]!, messages('what teas do you sell?'), 6));

    const r = await chat(a, 'tea', 'hello', { stream: true, stream_options: { include_usage: true } });
    const events = r.body.split('\n\n').filter((e) => e.startsWith('data: {'));
    const usage = JSON.parse(events.at(-1)!.slice(6)).usage;
    assert.ok(usage.prompt_tokens_details.cached_tokens >= 32);

    // The base model is its own identity: the adapter's blocks are not the base model's.
    assert.equal(cachedTokens((await chat(a, a.serving.baseId, 'hello')).json()), 0);

    const metrics = (await a.app.inject({ method: 'GET', url: '/metrics' })).body;
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1]);
    assert.ok(value('vllm:prefix_cache_hits_total') >= 64);
    assert.ok(value('vllm:prefix_cache_queries_total') > value('vllm:prefix_cache_hits_total'));
    assert.ok(value('loraserve_prefix_cache_bytes') > 0);
  });

  it('after a replacement on one replica, neither replica hits the old version’s blocks', async () => {
    assert.equal(cachedTokens((await chat(b, 'tea', 'hello')).json()), 0, 'each replica has its own cache');
    assert.ok(cachedTokens((await chat(b, 'tea', 'hello again')).json()) >= 32);

    assert.equal(await uploadAdapterDir(a.app, 'tea', dirs[1]!), 200);
    const want = await expected.answer(dirs[1]!, messages('hello'), 6);
    for (const s of [a, b]) {
      const r = (await chat(s, 'tea', 'hello')).json();
      assert.equal(cachedTokens(r), 0, 'the new version starts with no cached blocks');
      assert.equal(r.choices[0].message.content, want);
      assert.ok(cachedTokens((await chat(s, 'tea', 'hello')).json()) >= 32, 'and caches its own');
    }
  });
});
