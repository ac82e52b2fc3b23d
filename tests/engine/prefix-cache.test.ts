import { createEngine } from '../helpers/backend.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BASE_PREFIX_KEY, PREFIX_BLOCK, type Engine, type GenerateRequest, type GenerationResult } from '../../src/engine/index.js';
import type { AdapterMix } from '../../src/lora/index.js';
import { writeRandomModel } from '../../src/testing/index.js';
import { readAdapter, tempDir, writeRandomAdapter } from '../helpers/adapters.js';

const TOL = 1e-5;
const greedy = { temperature: 0 };

/**
 * The prefix cache on a real engine: a request whose prompt starts with cached blocks copies them
 * and reads only the rest, and produces the tokens and logprobs (top 5, so logits up to a shift)
 * of an engine without the cache, for base, LoRA, DoRA and mixed rows, on a model whose layers
 * mix sliding-window and full attention.
 */
describe('prefix cache', () => {
  let cached: Engine;
  let plain: Engine;
  const MIX: AdapterMix = [
    { slot: 1, weight: 0.6 },
    { slot: 3, weight: 0.4 },
  ];
  const rows: Array<{ label: string; adapters: AdapterMix; key: string }> = [
    { label: 'base', adapters: [], key: BASE_PREFIX_KEY },
    { label: 'LoRA', adapters: [{ slot: 1, weight: 1 }], key: 'lora@1' },
    { label: 'DoRA', adapters: [{ slot: 2, weight: 1 }], key: 'dora@1' },
    { label: 'mix', adapters: MIX, key: 'mix:lora@1*0.6+other@1*0.4' },
  ];
  let modelDir: string;

  before(async () => {
    const tiny = writeRandomModel(join(tempDir(), 'model'), {
      family: 'qwen2',
      seed: 91,
      layers: 3,
      config: { use_sliding_window: true, sliding_window: 6, layer_types: ['sliding_attention', 'full_attention', 'sliding_attention'] },
    });
    modelDir = tiny.dir;
    cached = await createEngine({ modelDir, slots: 3, maxRank: 8 });
    plain = await createEngine({ modelDir, slots: 3, maxRank: 8, prefixCacheBytes: 0 });
    const fields = [
      { r: 8, lora_alpha: 16, target_modules: 'all-linear' },
      { r: 4, lora_alpha: 8, use_dora: true, target_modules: ['q_proj', 'v_proj', 'down_proj'] },
      { r: 4, lora_alpha: 8, target_modules: ['k_proj', 'o_proj', 'up_proj'] },
    ];
    for (const [i, f] of fields.entries()) {
      const { dir } = await writeRandomAdapter(join(tempDir(), `a${i}`), cached.model, f, 300 + i);
      for (const e of [cached, plain]) e.slots!.write(i + 1, readAdapter(dir, e.model, 8));
    }
  });
  after(async () => {
    await cached.close();
    await plain.close();
  });

  const tokens = (seed: number, n: number) => Array.from({ length: n }, (_, i) => 3 + ((seed * 31 + i * 7) % 250));

  async function run(engine: Engine, req: Omit<GenerateRequest, 'sampling'>): Promise<GenerationResult> {
    return engine.generate({ maxTokens: 6, logprobs: 5, ...req, sampling: greedy }).result;
  }

  function assertSame(got: GenerationResult, want: GenerationResult, what: string): void {
    assert.deepEqual(
      got.logprobs!.map((l) => l.token),
      want.logprobs!.map((l) => l.token),
      `${what}: the same tokens`,
    );
    got.logprobs!.forEach((l, i) => {
      const w = want.logprobs![i]!;
      assert.ok(Math.abs(l.logprob - w.logprob) < TOL, `${what}: token ${i} logprob ${l.logprob} vs ${w.logprob}`);
      l.top.forEach((t, j) => assert.ok(Math.abs(t.logprob - w.top[j]!.logprob) < TOL, `${what}: token ${i} alternative ${j}`));
    });
  }

  for (const [r, row] of rows.entries()) {
    it(`${row.label} rows: a shared prefix is copied, and the output is the uncached one`, async () => {
      const system = tokens(10 + r, 2 * PREFIX_BLOCK + 7);
      const first = await run(cached, { promptTokens: [...system, ...tokens(40 + r, 5)], adapters: row.adapters, prefixKey: row.key });
      assert.equal(first.cachedTokens, 0);
      // Prompts ending mid-block, after the cached blocks and inside them.
      for (const tail of [tokens(50 + r, 9), tokens(60 + r, 1)]) {
        const promptTokens = [...system, ...tail];
        const req = { promptTokens, adapters: row.adapters, prefixKey: row.key };
        const hit = await run(cached, req);
        assert.equal(hit.cachedTokens, 2 * PREFIX_BLOCK, 'the two full blocks of the shared system prompt');
        assertSame(hit, await run(plain, req), `${row.label}, ${tail.length}-token tail`);
      }
      const short = system.slice(0, PREFIX_BLOCK + 3);
      const hit = await run(cached, { promptTokens: short, adapters: row.adapters, prefixKey: row.key });
      assert.equal(hit.cachedTokens, PREFIX_BLOCK);
      assertSame(
        hit,
        await run(plain, { promptTokens: short, adapters: row.adapters }),
        `${row.label}, prompt ending inside a cached block`,
      );
    });
  }

  it('a prompt that is exactly cached blocks still reads its last token; n > 1 choices share the hit', async () => {
    const prompt = tokens(70, 2 * PREFIX_BLOCK);
    await run(cached, { promptTokens: prompt, prefixKey: BASE_PREFIX_KEY });
    const again = await run(cached, { promptTokens: prompt, prefixKey: BASE_PREFIX_KEY });
    assert.equal(again.cachedTokens, PREFIX_BLOCK, 'the last block is read again, for the logits of the first output token');
    assertSame(again, await run(plain, { promptTokens: prompt }), 'exactly cached');
    const choices = cached.generateChoices(
      { promptTokens: prompt, prefixKey: BASE_PREFIX_KEY, maxTokens: 4, logprobs: 5, sampling: greedy },
      2,
    );
    const results = await Promise.all(choices.map((g) => g.result));
    assert.equal(results[0]!.cachedTokens, PREFIX_BLOCK);
    for (const res of results) assertSame(res, { ...again, logprobs: again.logprobs!.slice(0, 4) }, 'choice');
  });

  it('a generated answer is cached too: the next turn of a conversation finds it', async () => {
    const turn1 = tokens(80, PREFIX_BLOCK + 4);
    const first = await cached.generate({
      promptTokens: turn1,
      prefixKey: BASE_PREFIX_KEY,
      maxTokens: 2 * PREFIX_BLOCK,
      ignoreEos: true,
      sampling: greedy,
      logprobs: 0,
    }).result;
    const answer = first.logprobs!.map((l) => l.token);
    const turn2 = [...turn1, ...answer, ...tokens(81, 3)];
    const hit = await run(cached, { promptTokens: turn2, prefixKey: BASE_PREFIX_KEY });
    // The row held the prompt and all but the last generated token.
    assert.equal(hit.cachedTokens, Math.floor((turn1.length + answer.length - 1) / PREFIX_BLOCK) * PREFIX_BLOCK);
    assertSame(hit, await run(plain, { promptTokens: turn2 }), 'second turn');
  });

  it('a replaced adapter (a new identity) never hits the blocks of its old version', async () => {
    const system = tokens(90, 3 * PREFIX_BLOCK);
    const promptTokens = [...system, 5, 6, 7];
    const adapters = [{ slot: 3, weight: 1 }];
    await run(cached, { promptTokens, adapters, prefixKey: 'other@1' });
    assert.equal((await run(cached, { promptTokens, adapters, prefixKey: 'other@1' })).cachedTokens, 3 * PREFIX_BLOCK);
    const { dir } = await writeRandomAdapter(
      join(tempDir(), 'replaced'),
      cached.model,
      { r: 4, lora_alpha: 8, target_modules: 'all-linear' },
      999,
    );
    for (const e of [cached, plain]) e.slots!.write(3, readAdapter(dir, e.model, 8));
    const replaced = await run(cached, { promptTokens, adapters, prefixKey: 'other@2' });
    assert.equal(replaced.cachedTokens, 0);
    assertSame(replaced, await run(plain, { promptTokens, adapters }), 'replaced adapter');
  });

  it('requests for prompt logprobs read the whole prompt; rows without a key neither use nor fill the cache', async () => {
    const prompt = tokens(100, 2 * PREFIX_BLOCK + 2);
    await run(cached, { promptTokens: prompt, prefixKey: BASE_PREFIX_KEY });
    const scored = await cached.generate({
      promptTokens: prompt,
      prefixKey: BASE_PREFIX_KEY,
      maxTokens: 1,
      logprobs: 0,
      promptLogprobs: true,
      sampling: greedy,
    }).result;
    assert.equal(scored.cachedTokens, 0);
    const adapters = [{ slot: 1, weight: 1 }];
    await run(cached, { promptTokens: prompt, adapters });
    assert.equal((await run(cached, { promptTokens: prompt, adapters })).cachedTokens, 0);
  });

  it('under a tiny budget the least recently used prefix is evicted and memory stays bounded', async () => {
    const budget = 2 * PREFIX_BLOCK * cached.scheduler.prefixes!.bytesPerPosition;
    const engine = await createEngine({ modelDir, slots: 0, prefixCacheBytes: budget });
    try {
      const a = tokens(110, 2 * PREFIX_BLOCK + 1);
      const b = tokens(111, 2 * PREFIX_BLOCK + 1);
      // A finished row is kept at the scheduler's next step: wait for it, so each check sees the cache settled.
      const gen = async (p: number[]) => {
        const result = await engine.generate({ promptTokens: p, prefixKey: BASE_PREFIX_KEY, maxTokens: 1, sampling: greedy }).result;
        await engine.scheduler.idle();
        return result;
      };
      await gen(a);
      assert.equal((await gen(a)).cachedTokens, 2 * PREFIX_BLOCK);
      await gen(b);
      const cache = engine.scheduler.prefixes!;
      assert.ok(cache.bytes <= budget);
      assert.ok(cache.counters.evictions >= 1);
      assert.equal((await gen(a)).cachedTokens, 0, 'a was evicted for b');
      assert.equal((await gen(b)).cachedTokens, 0, 'then b for a');
      assert.ok(cache.counters.hits > 0 && cache.counters.queries > cache.counters.hits);
    } finally {
      await engine.close();
    }
  });
});
