import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { argmax, DEFAULT_SAMPLING, Sampler } from '../../src/engine/sampler.js';
import { StopMatcher } from '../../src/engine/stop-matcher.js';

const logits = Float32Array.from([0.1, 2.5, -1, 2.4, 0.3, 1.9]);

describe('sampler', () => {
  it('temperature 0 is greedy; top_k 1 and a tiny top_p reduce sampling to greedy', () => {
    assert.equal(new Sampler({ ...DEFAULT_SAMPLING, temperature: 0 }).sample(logits), 1);
    for (let seed = 0; seed < 20; seed++) {
      assert.equal(new Sampler({ ...DEFAULT_SAMPLING, topK: 1, seed }).sample(logits), 1);
      assert.equal(new Sampler({ ...DEFAULT_SAMPLING, topP: 0.01, seed }).sample(logits), 1);
    }
  });

  it('top_k keeps sampling inside the k best tokens, and plain sampling reaches beyond them', () => {
    const seen = new Set<number>();
    const wide = new Set<number>();
    for (let seed = 0; seed < 300; seed++) {
      seen.add(new Sampler({ ...DEFAULT_SAMPLING, topK: 2, seed }).sample(logits));
      wide.add(new Sampler({ ...DEFAULT_SAMPLING, temperature: 2, seed }).sample(logits));
    }
    assert.deepEqual([...seen].sort(), [1, 3]);
    assert.ok(wide.size > 2);
  });

  it('frequency and presence penalties push a repeated token down', () => {
    const s = new Sampler({ ...DEFAULT_SAMPLING, temperature: 0, frequencyPenalty: 0.2, presencePenalty: 0 });
    s.observe(1);
    assert.equal(s.sample(logits), 3, '2.5 - 0.2 < 2.4');
    assert.equal(argmax(logits), 1, 'the logits themselves are left alone');
  });

  it('the same seed draws the same sequence', () => {
    const draw = (seed: number) =>
      Array.from(
        { length: 10 },
        (
          (s) => () =>
            s.sample(logits)
        )(new Sampler({ ...DEFAULT_SAMPLING, seed })),
      );
    assert.deepEqual(draw(5), draw(5));
  });
});

describe('repetition penalty and banned tokens', () => {
  it("divides a seen token's positive score and multiplies a negative one, prompt tokens included", () => {
    const scores = Float32Array.from([2.0, 1.9, -0.5, -0.6]);
    const greedy = { ...DEFAULT_SAMPLING, temperature: 0 };
    assert.equal(new Sampler(greedy).sample(scores), 0);
    // 2.0 / 1.5 = 1.33 < 1.9: the prompt token 0 loses its lead.
    assert.equal(new Sampler({ ...greedy, repetitionPenalty: 1.5 }, [0]).sample(scores), 1);
    const out = new Sampler({ ...greedy, repetitionPenalty: 1.5 });
    out.observe(0);
    out.observe(1);
    // Both seen: 2.0 / 1.5 = 1.33 against 1.9 / 1.5 = 1.27, token 0 leads again.
    assert.equal(out.sample(scores), 0);
    const neg = Float32Array.from([-1.0, -1.2]);
    // -1.0 × 2 = -2 < -1.2: a seen negative token drops.
    assert.equal(new Sampler({ ...greedy, repetitionPenalty: 2 }, [0]).sample(neg), 1);
    assert.equal(new Sampler(greedy).sample(scores, [0, 1]), 2, 'banned tokens are never chosen');
    assert.deepEqual(
      Array.from(scores),
      [2.0, 1.9, -0.5, -0.6].map((v) => Math.fround(v)),
      'the logits themselves are left alone',
    );
  });
});

describe('stop matcher', () => {
  it('holds back a possible stop prefix and cuts at the stop', () => {
    const m = new StopMatcher(['</end>']);
    assert.deepEqual(m.push('hello </e'), { text: 'hello ', stopped: false });
    assert.deepEqual(m.push('nd> tail'), { text: '', stopped: true });
    const n = new StopMatcher(['</end>']);
    assert.deepEqual(n.push('a </e'), { text: 'a ', stopped: false });
    assert.deepEqual(n.push('x'), { text: '</ex', stopped: false });
    assert.equal(n.flush(), '');
  });
});
