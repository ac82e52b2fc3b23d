import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { logSoftmax, referenceLogits } from '../helpers/reference.js';

const TOL = 1e-4;

describe('logprobs, echo and every prompt form through the official openai client', () => {
  let s: TestServer;
  let client: OpenAI;
  let model: string;
  before(async () => {
    s = await startTestServer();
    await s.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = s.app.server.address() as { port: number };
    client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'none', maxRetries: 0 });
    model = s.serving.baseId;
  });
  after(() => s.close());

  it("chat: logprobs with top_logprobs in OpenAI's shape, the same streamed and not", async () => {
    const params = {
      model,
      messages: [{ role: 'user' as const, content: 'hello there' }],
      max_tokens: 6,
      temperature: 0,
      logprobs: true,
      top_logprobs: 3,
    };
    const done = await client.chat.completions.create(params);
    const content = done.choices[0]!.logprobs!.content!;
    assert.equal(content.length, done.usage!.completion_tokens);
    let text = '';
    for (const t of content) {
      assert.ok(t.logprob <= 0);
      assert.equal(t.top_logprobs.length, 3);
      assert.equal(t.top_logprobs[0]!.token, t.token, 'greedy: the chosen token is the most likely');
      assert.ok(Math.abs(t.top_logprobs[0]!.logprob - t.logprob) < 1e-9);
      assert.ok(t.top_logprobs[0]!.logprob >= t.top_logprobs[1]!.logprob && t.top_logprobs[1]!.logprob >= t.top_logprobs[2]!.logprob);
      assert.equal(Buffer.from(t.bytes!).toString('utf8'), t.token);
      text += t.token;
    }
    assert.equal(text, done.choices[0]!.message.content, 'the tokens spell the answer');

    const streamed: typeof content = [];
    for await (const chunk of await client.chat.completions.create({ ...params, stream: true }))
      streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    assert.deepEqual(
      streamed.map((t) => t.token),
      content.map((t) => t.token),
    );
    streamed.forEach((t, i) => {
      assert.ok(Math.abs(t.logprob - content[i]!.logprob) < 1e-5);
    });

    const plain = await client.chat.completions.create({ ...params, logprobs: false, top_logprobs: undefined });
    assert.equal(plain.choices[0]!.logprobs, null);
  });

  it('completions: generated logprobs match the reference forward pass', async () => {
    const prompt = [5, 17, 29, 41, 53];
    const r = await client.completions.create({ model, prompt, max_tokens: 4, temperature: 0, logprobs: 2 });
    const lp = r.choices[0]!.logprobs!;
    assert.equal(lp.token_logprobs!.length, 4);
    assert.equal(lp.tokens!.join(''), r.choices[0]!.text);
    assert.deepEqual(
      lp.text_offset,
      lp.tokens!.map((_, i) => lp.tokens!.slice(0, i).join('').length),
    );
    // Greedy decoding of the reference itself gives the tokens; their logprobs must match.
    const tokens = [...prompt];
    for (let i = 0; i < 4; i++) {
      const ref = logSoftmax(referenceLogits(s.tiny, tokens).at(-1)!);
      const next = ref.indexOf(Math.max(...ref));
      assert.ok(Math.abs(lp.token_logprobs![i]! - ref[next]!) < TOL, `token ${i}`);
      tokens.push(next);
    }
    for (const top of lp.top_logprobs!) assert.ok(Object.keys(top!).length >= 1 && Object.keys(top!).length <= 3);
  });

  it('lm-evaluation-harness loglikelihood requests: token-id prompts, echo, logprobs=1, max_tokens 1 and 0', async () => {
    // What lm_eval's local-completions model sends for a batch of (context, continuation) pairs.
    const pairs = [
      { context: [11, 12, 13, 14, 15, 16], continuation: [70, 71] },
      { context: [200, 3, 9], continuation: [44, 45, 46] },
    ];
    for (const maxTokens of [1, 0]) {
      const r = await client.completions.create({
        model,
        prompt: pairs.map((p) => [...p.context, ...p.continuation]),
        temperature: 0,
        max_tokens: maxTokens,
        logprobs: 1,
        seed: 1234,
        echo: true,
      });
      assert.equal(r.choices.length, pairs.length);
      const choices = [...r.choices].sort((a, b) => a.index - b.index);
      pairs.forEach((p, i) => {
        const lp = choices[i]!.logprobs!;
        const all = [...p.context, ...p.continuation];
        assert.equal(lp.token_logprobs!.length, all.length + maxTokens);
        assert.equal(lp.token_logprobs![0], null);
        // lm_eval: sum(token_logprobs[ctxlen:-1]) with max_tokens 1 (the generated token dropped).
        const end = maxTokens ? -1 : undefined;
        const got = lp.token_logprobs!.slice(p.context.length, end) as number[];
        const ref = referenceLogits(s.tiny, all).map(logSoftmax);
        const want = p.continuation.map((tok, j) => ref[p.context.length + j - 1]![tok]!);
        assert.ok(Math.abs(got.reduce((a, b) => a + b, 0) - want.reduce((a, b) => a + b, 0)) < TOL, `pair ${i} sum`);
        // lm_eval's is_greedy: each continuation token's logprob equals the max of its top_logprobs.
        const tops = lp.top_logprobs!.slice(p.context.length, end);
        const greedy = got.every((v, j) => v === Math.max(...Object.values(tops[j]!)));
        const refGreedy = p.continuation.every((tok, j) =>
          ref[p.context.length + j - 1]!.every((v) => v <= ref[p.context.length + j - 1]![tok]! + 1e-9),
        );
        assert.equal(greedy, refGreedy, `pair ${i} is_greedy`);
      });
    }
  });

  it('prompt as a string, a list of strings, token ids and token-id lists: one choice per prompt', async () => {
    const base = { model, max_tokens: 5, temperature: 0 };
    const texts = ['Once upon', 'The sea'];
    const single = await Promise.all(texts.map(async (prompt) => (await client.completions.create({ ...base, prompt })).choices[0]!.text));
    const listed = await client.completions.create({ ...base, prompt: texts });
    assert.deepEqual(
      [...listed.choices].sort((a, b) => a.index - b.index).map((c) => c.text),
      single,
    );
    assert.equal(listed.usage!.completion_tokens, 10);
    const ids = texts.map((t) => s.serving.engine.tokenizer.encodePrompt(t));
    const one = await client.completions.create({ ...base, prompt: ids[0]! });
    assert.equal(one.choices[0]!.text, single[0]);
    const many = await client.completions.create({ ...base, prompt: ids, echo: true });
    assert.deepEqual(
      [...many.choices].sort((a, b) => a.index - b.index).map((c) => c.text),
      ids.map((idList, i) => s.serving.engine.tokenizer.decode(idList) + single[i]),
    );
    // Streamed, the choices interleave, each tagged with its index.
    const parts: string[] = ['', ''];
    for await (const chunk of await client.completions.create({ ...base, prompt: texts, stream: true }))
      for (const c of chunk.choices) parts[c.index] += c.text;
    assert.deepEqual(parts, single);
  });

  it("streamed echo with logprobs sends the prompt's logprobs with the echoed prompt", async () => {
    const prompt = [7, 8, 9, 10];
    const whole = await client.completions.create({ model, prompt, max_tokens: 3, temperature: 0, logprobs: 0, echo: true });
    const tokens: Array<number | null> = [];
    for await (const chunk of await client.completions.create({
      model,
      prompt,
      max_tokens: 3,
      temperature: 0,
      logprobs: 0,
      echo: true,
      stream: true,
    })) {
      tokens.push(...(chunk.choices[0]?.logprobs?.token_logprobs ?? []));
    }
    assert.equal(tokens.length, 7);
    const want = whole.choices[0]!.logprobs!.token_logprobs!;
    assert.equal(want[0], null);
    assert.equal(tokens[0], null);
    for (let i = 1; i < tokens.length; i++) assert.ok(Math.abs(tokens[i]! - want[i]!) < 1e-5, `token ${i}`);
  });

  it('refuses what it cannot honour with a 400 naming the field', async () => {
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ messages: [{ role: 'user', content: 'x' }], top_logprobs: 2 }, '/v1/chat/completions', 'top_logprobs'],
      [{ messages: [{ role: 'user', content: 'x' }], logprobs: true, top_logprobs: 21 }, '/v1/chat/completions', 'top_logprobs'],
      [{ prompt: [[1, 2], [999999]] }, '/v1/completions', 'prompt'],
      [{ prompt: 'x', logprobs: 21 }, '/v1/completions', 'logprobs'],
    ];
    for (const [body, url, param] of cases) {
      const r = await s.app.inject({ method: 'POST', url, payload: { model, max_tokens: 2, ...body } });
      assert.equal(r.statusCode, 400, JSON.stringify(body));
      assert.match(JSON.stringify(r.json().error), new RegExp(param));
    }
  });
});

describe('n choices through the official openai client', () => {
  let s: TestServer;
  let client: OpenAI;
  before(async () => {
    s = await startTestServer({ maxChoices: 4 });
    await s.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = s.app.server.address() as { port: number };
    client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'none', maxRetries: 0 });
  });
  after(() => s.close());

  it('greedy choices all equal the single answer; sampled ones are reproducible with a seed; the prompt is read once', async () => {
    const model = s.serving.baseId;
    const messages = [{ role: 'user' as const, content: 'tell me a story' }];
    const one = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
    const prefills = s.serving.engine.scheduler.steps.prefill;
    const greedy = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0, n: 4 });
    assert.equal(s.serving.engine.scheduler.steps.prefill - prefills, 1, 'one prefill step for four choices');
    assert.deepEqual(
      greedy.choices.map((c) => c.index),
      [0, 1, 2, 3],
    );
    for (const c of greedy.choices) assert.equal(c.message.content, one.choices[0]!.message.content);
    assert.equal(greedy.usage!.prompt_tokens, one.usage!.prompt_tokens);
    assert.equal(greedy.usage!.completion_tokens, 4 * one.usage!.completion_tokens);

    const sampled = { model, messages, max_tokens: 12, temperature: 1.5, n: 4, seed: 5 };
    const a = await client.chat.completions.create(sampled);
    const b = await client.chat.completions.create(sampled);
    assert.deepEqual(
      a.choices.map((c) => c.message.content),
      b.choices.map((c) => c.message.content),
    );
    assert.ok(new Set(a.choices.map((c) => c.message.content)).size > 1, 'choices sample independently');
    const streamed = ['', '', '', ''];
    for await (const chunk of await client.chat.completions.create({ ...sampled, stream: true }))
      for (const c of chunk.choices) streamed[c.index] += c.delta.content ?? '';
    assert.deepEqual(
      streamed,
      a.choices.map((c) => c.message.content),
    );
    // Two prompts × n = 2: choices indexed prompt by prompt.
    const text = await client.completions.create({ model, prompt: ['Once', 'The sea'], max_tokens: 4, temperature: 0, n: 2 });
    const byIndex = [...text.choices].sort((x, y) => x.index - y.index).map((c) => c.text);
    assert.equal(byIndex.length, 4);
    assert.equal(byIndex[0], byIndex[1]);
    assert.equal(byIndex[2], byIndex[3]);
  });
});

describe('generation_config.json defaults (--generation-config auto | none)', () => {
  const generationConfig = { do_sample: false, max_new_tokens: 5, repetition_penalty: 1.2 };
  let auto: TestServer;
  let none: TestServer;
  before(async () => {
    auto = await startTestServer({}, { generationConfig });
    none = await startTestServer({ generationConfig: 'none' }, { generationConfig });
  });
  after(async () => {
    await auto.close();
    await none.close();
  });
  const chat = (s: TestServer, extra: Record<string, unknown>) =>
    s.app.inject({
      method: 'POST',
      url: '/v1/chat/completions',
      payload: { model: s.serving.baseId, messages: [{ role: 'user', content: 'hi' }], ignore_eos: true, ...extra },
    });

  it('fills the fields a request leaves unset, and only those', async () => {
    const plain = (await chat(auto, {})).json();
    assert.equal(plain.usage.completion_tokens, 5, 'max_new_tokens is the default max_tokens');
    const explicit = (await chat(auto, { temperature: 0, repetition_penalty: 1.2, max_tokens: 5 })).json();
    assert.equal(
      plain.choices[0].message.content,
      explicit.choices[0].message.content,
      'do_sample false: greedy, with the repetition penalty',
    );
    const unpenalised = (await chat(auto, { repetition_penalty: 1, max_tokens: 5 })).json();
    assert.equal(
      (await chat(auto, { repetition_penalty: 1, temperature: 0, max_tokens: 5 })).json().choices[0].message.content,
      unpenalised.choices[0].message.content,
    );
    assert.equal((await chat(auto, { max_tokens: 9 })).json().usage.completion_tokens, 9, 'a request field wins');
    // none: OpenAI's defaults (max_tokens up to the server limit, 64 in tests).
    assert.equal((await chat(none, {})).json().usage.completion_tokens, 64);
  });
});
