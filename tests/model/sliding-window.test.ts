import { createEngine } from '../helpers/backend.js';
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Engine } from '../../src/engine/index.js';
import { loadHfModel } from '../../src/model/index.js';
import { writeRandomModel, type RandomModelOptions, type TinyModel } from '../../src/testing/index.js';
import { referenceLogits, relError } from '../helpers/reference.js';
import { tempDir } from '../helpers/adapters.js';
import { decode, prefill } from '../helpers/drive.js';

const TOL = 1e-4;
const engines: Engine[] = [];
after(async () => {
  for (const e of engines) await e.close();
});

const MISTRAL = { architectures: ['MistralForCausalLM'], model_type: 'mistral' };
const cases: Array<[string, RandomModelOptions, Array<number | null>]> = [
  ['Mistral sliding_window 4: every layer', { family: 'llama', seed: 71, layers: 3, config: { ...MISTRAL, sliding_window: 4 } }, [4, 4, 4]],
  [
    'Qwen2 use_sliding_window, window 3 from max_window_layers 1',
    { family: 'qwen2', seed: 72, layers: 3, config: { use_sliding_window: true, sliding_window: 3, max_window_layers: 1 } },
    [null, 3, 3],
  ],
  [
    'Qwen2 with explicit layer_types',
    {
      family: 'qwen2',
      seed: 73,
      layers: 3,
      config: { use_sliding_window: true, sliding_window: 5, layer_types: ['sliding_attention', 'full_attention', 'sliding_attention'] },
    },
    [5, null, 5],
  ],
  [
    'Qwen2 sliding_window without use_sliding_window: full attention',
    { family: 'qwen2', seed: 74, layers: 2, config: { sliding_window: 2, max_window_layers: 0 } },
    [null, null],
  ],
];

/** The same model read as if it had no window anywhere (to show the window changes the answer). */
const withoutWindow = (tiny: TinyModel): TinyModel => ({
  ...tiny,
  config: { ...tiny.config, sliding_window: null, use_sliding_window: false },
});

describe('sliding-window attention, as transformers applies it', () => {
  for (const [title, options, windows] of cases) {
    it(`${title}: windows per layer, and prefill + decode beyond the window equal the reference`, async () => {
      const tiny = writeRandomModel(join(tempDir(), 'model'), options);
      const model = loadHfModel(tiny.dir);
      assert.deepEqual(model.dims.slidingWindows, windows);
      model.weights.close();
      const engine = await createEngine({ modelDir: tiny.dir, slots: 0 });
      engines.push(engine);
      // Two rows of different lengths (left padding), both longer than the window, then decode steps.
      const tokens = [
        [3, 141, 59, 26, 53, 58, 97, 93, 23, 84, 7, 8, 9],
        [200, 17, 4, 5, 6, 250, 31, 32, 33],
      ];
      const fed = [9, 7];
      const refs = tokens.map((t) => referenceLogits(tiny, t));
      let step = await prefill(
        engine,
        tokens.map((t, r) => t.slice(0, fed[r])),
      );
      tokens.forEach((_, r) =>
        assert.ok(
          relError(step.logits[r]!, refs[r]![fed[r]! - 1]!) < TOL,
          `row ${r} prefill: ${relError(step.logits[r]!, refs[r]![fed[r]! - 1]!)}`,
        ),
      );
      for (let k = 0; k < 2; k++) {
        step = await decode(
          engine,
          step.state,
          tokens.map((t, r) => t[fed[r]! + k]!),
        );
        tokens.forEach((_, r) => assert.ok(relError(step.logits[r]!, refs[r]![fed[r]! + k]!) < TOL, `row ${r} decode ${k}`));
      }
      const full = referenceLogits(withoutWindow(tiny), tokens[0]!);
      const windowed = windows.some((w) => w !== null);
      assert.equal(
        relError(refs[0]![10]!, full[10]!) > 1e-3,
        windowed,
        windowed ? 'the window changes the logits past it' : 'no window, no change',
      );
    });
  }

  it('chunked prefill and scheduled decode follow the reference greedily past the window', async () => {
    const tiny = writeRandomModel(join(tempDir(), 'model'), { family: 'llama', seed: 75, config: { ...MISTRAL, sliding_window: 3 } });
    const engine = await createEngine({ modelDir: tiny.dir, slots: 0, prefillChunk: 4, maxBatchTokens: 8 });
    engines.push(engine);
    const prompt = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19];
    const tokens: number[] = [];
    await engine.generate({
      promptTokens: prompt,
      maxTokens: 5,
      sampling: { temperature: 0 },
      ignoreEos: true,
      onToken: (t) => tokens.push(t),
    }).result;
    // Greedy from the reference: each next token is the argmax over its logits at the last position.
    const seq = [...prompt];
    for (let i = 0; i < 5; i++) {
      const logits = referenceLogits(tiny, seq).at(-1)!;
      let best = 0;
      for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[best]!) best = v;
      seq.push(best);
    }
    assert.deepEqual(tokens, seq.slice(prompt.length));
  });

  it('refuses layer_types that name sliding layers without a window', () => {
    const tiny = writeRandomModel(join(tempDir(), 'model'), {
      family: 'qwen2',
      seed: 76,
      config: { use_sliding_window: false, layer_types: ['sliding_attention', 'full_attention'] },
    });
    assert.throws(() => loadHfModel(tiny.dir), /layer_types marks sliding_attention layers, but no window is set/);
  });
});
