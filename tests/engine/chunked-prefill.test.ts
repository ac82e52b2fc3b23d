import { createEngine } from '../helpers/backend.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Engine } from '../../src/engine/index.js';
import { writeRandomModel } from '../../src/testing/index.js';
import { readAdapter, tempDir, writeRandomAdapter } from '../helpers/adapters.js';

describe('chunked prefill on a real engine', () => {
  const engines: Engine[] = [];
  let whole: Engine;
  let chunked: Engine;
  before(async () => {
    const tiny = writeRandomModel(join(tempDir(), 'model'), { family: 'llama', seed: 9 });
    const dir = join(tempDir(), 'ad');
    whole = await createEngine({ modelDir: tiny.dir, slots: 2, maxRank: 8, maxBatch: 4 });
    await writeRandomAdapter(dir, whole.model, { r: 8, lora_alpha: 16, target_modules: ['q_proj', 'v_proj', 'down_proj'] }, 3);
    // chunks of 5 tokens, and at most 8 padded prompt tokens per step
    chunked = await createEngine({ modelDir: tiny.dir, slots: 2, maxRank: 8, maxBatch: 4, prefillChunk: 5, maxBatchTokens: 8 });
    for (const e of [whole, chunked]) {
      e.slots!.write(1, readAdapter(dir, e.model, 8));
      engines.push(e);
    }
  });
  after(async () => {
    for (const e of engines) await e.close();
  });

  it('prompts read in chunks, interleaved with running streams, give the tokens of a one-step prefill', async () => {
    const prompts = [
      { text: 'a long prompt that takes several chunks to read, with an adapter on it', slot: 1 },
      { text: 'short', slot: 0 },
      { text: '한국어 프롬프트도 여러 조각으로 나뉘어 읽힙니다', slot: 1 },
    ];
    const run = async (engine: Engine) => {
      const tokens = prompts.map((p) => engine.tokenizer.encode(p.text));
      // the short request starts first, so the long prompts' chunks alternate with its decode steps
      const first = engine.generate({ promptTokens: tokens[1]!, slot: 0, maxTokens: 30, sampling: { temperature: 0 } });
      await new Promise((r) => setImmediate(r));
      const rest = [0, 2].map((i) =>
        engine.generate({ promptTokens: tokens[i]!, slot: prompts[i]!.slot, maxTokens: 12, sampling: { temperature: 0 } }),
      );
      return (await Promise.all([first, ...rest].map((g) => g.result))).map((r) => r.text);
    };
    const prefillsBefore = chunked.scheduler.steps.prefill;
    const expected = await run(whole);
    assert.deepEqual(await run(chunked), expected);
    const longest = Math.max(...prompts.map((p) => chunked.tokenizer.encode(p.text).length));
    assert.ok(longest > 10, 'the long prompts need several chunks');
    assert.ok(chunked.scheduler.steps.prefill - prefillsBefore >= Math.ceil(longest / 5), 'prompts were read in several prefill steps');
  });
});
