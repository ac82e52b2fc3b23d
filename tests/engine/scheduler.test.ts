import { createEngine } from '../helpers/backend.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Engine, Generation } from '../../src/engine/index.js';
import { writeRandomModel } from '../../src/testing/index.js';
import { IncrementalDetokenizer } from '../../src/tokenizer/index.js';
import { readAdapter, tempDir, writeRandomAdapter } from '../helpers/adapters.js';

async function collect(gen: Generation): Promise<{ text: string; chunks: string[] }> {
  const chunks: string[] = [];
  for await (const c of gen) chunks.push(c);
  return { text: chunks.join(''), chunks };
}

describe('continuous batching scheduler', () => {
  let engine: Engine;
  before(async () => {
    const tiny = writeRandomModel(join(tempDir(), 'model'), { family: 'llama', seed: 41 });
    engine = await createEngine({ modelDir: tiny.dir, slots: 2, maxRank: 8, maxBatch: 8 });
    const dir = join(tempDir(), 'ad');
    await writeRandomAdapter(dir, engine.model, { r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'] }, 5);
    engine.slots!.write(1, readAdapter(dir, engine.model, 8));
  });
  after(() => engine.close());

  const greedy = { temperature: 0 };
  const prompt = (s: string) => engine.tokenizer.encode(s);

  it('requests that join mid-generation produce exactly the tokens they produce alone', async () => {
    const specs = [
      { p: 'hello there', slot: 0, n: 24 },
      { p: '안녕하세요, 환불 규정이 궁금합니다', slot: 1, n: 16 },
      { p: 'x', slot: 1, n: 12 },
      { p: 'the quick brown fox jumps', slot: 0, n: 20 },
    ];
    const alone: string[] = [];
    for (const s of specs)
      alone.push((await engine.generate({ promptTokens: prompt(s.p), slot: s.slot, maxTokens: s.n, sampling: greedy }).result).text);

    const gens: Generation[] = [];
    const results: Array<Promise<string>> = [];
    const decodeBefore = engine.scheduler.steps.decode;
    for (const s of specs) {
      const g = engine.generate({ promptTokens: prompt(s.p), slot: s.slot, maxTokens: s.n, sampling: greedy });
      gens.push(g);
      results.push(collect(g).then((r) => r.text));
      // let a few decode steps pass so the next request joins a running batch
      const target = engine.scheduler.steps.decode + 3;
      while (engine.scheduler.steps.decode < target && engine.scheduler.stats.running > 0) await new Promise((r) => setImmediate(r));
    }
    const together = await Promise.all(results);
    assert.deepEqual(together, alone);
    assert.ok(
      engine.scheduler.steps.decode - decodeBefore < specs.reduce((a, s) => a + s.n, 0),
      'decode steps were shared between requests',
    );
    for (const g of gens) assert.equal((await g.result).finishReason, 'length');
  });

  it('n choices continue from copies of the prompt row: greedy choices equal the single answer, seeded ones differ', async () => {
    const request = { promptTokens: prompt('the cache row is copied'), slot: 1, maxTokens: 10, ignoreEos: true };
    const alone = await collect(engine.generate({ ...request, sampling: greedy }));
    const greedyChoices = await Promise.all(engine.generateChoices({ ...request, sampling: greedy }, 3).map(collect));
    for (const c of greedyChoices) assert.equal(c.text, alone.text);
    const sampled = engine.generateChoices({ ...request, sampling: { temperature: 1.5, seed: 7 } }, 3);
    const texts = (await Promise.all(sampled.map(collect))).map((c) => c.text);
    assert.ok(new Set(texts).size > 1, 'choices sample with seeds seed, seed + 1, …');
    const again = await Promise.all(engine.generateChoices({ ...request, sampling: { temperature: 1.5, seed: 7 } }, 3).map(collect));
    assert.deepEqual(
      again.map((c) => c.text),
      texts,
    );
  });

  it('cancellation frees the row at the next step and the others carry on', async () => {
    const ctl = new AbortController();
    const long = engine.generate({ promptTokens: prompt('cancel me'), maxTokens: 200, sampling: greedy, signal: ctl.signal });
    let released = false;
    const other = engine.generate({ promptTokens: prompt('keep me'), maxTokens: 30, sampling: greedy, onDone: () => {} });
    const cancelled = engine.generate({
      promptTokens: prompt('and me'),
      maxTokens: 200,
      sampling: greedy,
      onDone: () => (released = true),
    });
    let seen = 0;
    for await (const _ of long) {
      if (++seen === 3) {
        ctl.abort();
        cancelled.cancel();
      }
    }
    assert.equal((await long.result).finishReason, 'cancelled');
    assert.ok((await long.result).completionTokens < 200);
    assert.equal((await cancelled.result).finishReason, 'cancelled');
    assert.equal(released, true);
    assert.equal((await other.result).finishReason, 'length');
    assert.equal((await other.result).completionTokens, 30);
    await engine.scheduler.idle();
    assert.equal(engine.scheduler.stats.running, 0);
    assert.equal(engine.scheduler.stats.kvFloats, 0);
  });

  it('seeded sampling is reproducible and the seed matters', async () => {
    const run = (seed: number) =>
      engine.generate({ promptTokens: prompt('tell me'), maxTokens: 40, sampling: { temperature: 1.0, topP: 0.9, topK: 50, seed } }).result;
    const [a, b, c] = await Promise.all([run(7), run(7), run(8)]);
    assert.equal(a.text, b.text);
    assert.notEqual(a.text, c.text);
  });

  it('stop strings end generation and are never streamed, even in part', async () => {
    const free = await engine.generate({ promptTokens: prompt('stop test'), maxTokens: 40, sampling: greedy }).result;
    const stop = free.text.slice(10, 13);
    assert.equal(stop.length, 3);
    const g = engine.generate({ promptTokens: prompt('stop test'), maxTokens: 40, sampling: greedy, stop: [stop] });
    const { text, chunks } = await collect(g);
    assert.equal(text, free.text.slice(0, free.text.indexOf(stop)));
    assert.equal((await g.result).finishReason, 'stop');
    assert.ok(!chunks.join('').includes(stop));
  });

  it('streams Korean split across byte-level tokens only as whole characters', () => {
    const text = '안녕하세요! 환불은 7일 이내 가능합니다 😀';
    const ids = engine.tokenizer.encode(text);
    assert.ok(ids.length > [...text].length, 'each syllable spans several byte tokens');
    const detok = new IncrementalDetokenizer((t) => engine.tokenizer.decode(t));
    const chunks = ids.map((id) => detok.push(id)).concat(detok.flush());
    for (const c of chunks) assert.ok(!c.includes('\uFFFD'), `chunk ${JSON.stringify(c)} holds a broken character`);
    assert.equal(chunks.join(''), text);
  });

  it('rejects a prompt longer than the context', () => {
    assert.throws(() => engine.generate({ promptTokens: new Array(engine.options.maxContext + 1).fill(5) }), {
      code: 'prompt_too_long',
      param: 'promptTokens',
    });
  });
});
