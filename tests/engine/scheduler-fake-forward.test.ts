import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler, type ForwardInput, type ForwardOutput, type SchedulerLimits } from '../../src/engine/scheduler.js';
import { DEFAULT_SAMPLING } from '../../src/engine/sampler.js';
import { KvCache } from '../../src/engine/kv-cache.js';
import { PREFIX_BLOCK, PrefixCache } from '../../src/engine/prefix-cache.js';
import type { ConstraintWalker, OutputConstraint } from '../../src/grammar/index.js';
import { singleSlot } from '../../src/lora/index.js';

/**
 * The scheduler against a fake forward pass (as vLLM tests its scheduler): a "model" whose next
 * token is the last fed token + 1, and whose cache entry at position p is (token, p). Every step
 * checks what a real model relies on: each row's cached positions hold exactly its own tokens at
 * their positions, and a row's new tokens continue where its cache ends.
 */
const VOCAB = 1000;
const dims = { layers: 2, kvHeads: 1, headDim: 2 };

interface Recorded {
  kind: 'prefill' | 'decode';
  batch: number;
  seq: number;
  liveRows: number;
  slots: number[];
}

function fakeModel(options: { failOn?: (step: number, input: ForwardInput) => boolean } = {}) {
  const steps: Recorded[] = [];
  const kv = new KvCache(dims, 512);
  /** Reads each row's past from the cache the scheduler owns rows of, and writes its new tokens there. */
  const forward = async (input: ForwardInput): Promise<ForwardOutput> => {
    const { batch, seq, rows } = input;
    let live = 0;
    const logits = new Float32Array(input.logitRows.length * VOCAB);
    const keys = Array.from({ length: dims.layers }, () => new Float32Array(batch * seq * 2));
    const values = Array.from({ length: dims.layers }, () => new Float32Array(batch * seq * 2));
    for (let r = 0; r < batch; r++) {
      const count = input.counts[r]!;
      if (count === 0) continue;
      const cached = input.cached[r]!;
      assert.equal(cached, kv.length(rows[r]!), `row ${r}: new tokens continue where its cache ends`);
      const past = kv.past([rows[r]!]);
      for (let p = 0; p < cached; p++)
        for (const l of [0, 1]) assert.equal(past.keys[l]![p * 2 + 1], p, `row ${r} layer ${l}: position ${p} holds its own entry`);
      for (let t = seq - count; t < seq; t++) {
        const position = Number(input.positions[r * seq + t]);
        assert.equal(position, cached + t - (seq - count), `row ${r}: new token continues the cache`);
        for (const l of [0, 1]) {
          keys[l]![(r * seq + t) * 2] = input.ids[r * seq + t]!;
          keys[l]![(r * seq + t) * 2 + 1] = position;
        }
      }
      live++;
    }
    input.logitRows.forEach((n, m) => (logits[m * VOCAB + ((input.ids[Number(n)]! + 1) % VOCAB)] = 1));
    const kind = seq > 1 || input.counts.every((n, r) => n === 0 || input.cached[r] === 0) ? 'prefill' : 'decode';
    steps.push({ kind, batch, seq, liveRows: live, slots: input.adapters.map((mix) => mix[0]?.slot ?? 0) });
    if (options.failOn?.(steps.length, input)) throw new Error('injected failure');
    kv.append(rows, input.counts, seq, keys, values);
    await new Promise((r) => setImmediate(r));
    return { logits };
  };
  return { forward, kv, steps };
}

function scheduler(model: ReturnType<typeof fakeModel>, limits: Partial<SchedulerLimits> = {}, prefixes: PrefixCache | null = null) {
  return new Scheduler(
    model.forward,
    model.kv,
    { maxBatch: 4, maxBatchTokens: 64, maxContext: 512, prefillChunk: 16, ...limits },
    new Set([VOCAB - 1]),
    (ids) => ids.map((i) => `<${i}>`).join(''),
    prefixes,
  );
}

/** Waits until `s` has run `decodes` decode steps; fails instead of hanging if it went idle first. */
async function afterDecodes(s: Scheduler, decodes: number): Promise<void> {
  while (s.steps.decode < decodes) {
    if (s.stats.running === 0 && s.stats.waiting === 0) assert.fail(`the scheduler went idle after ${s.steps.decode} decode steps`);
    await new Promise((r) => setImmediate(r));
  }
}

const request = (prompt: number[], maxTokens: number, slot = 0, extra: Record<string, unknown> = {}) => ({
  promptTokens: prompt,
  adapters: singleSlot(slot),
  maxTokens,
  stop: [],
  sampling: { ...DEFAULT_SAMPLING, temperature: 0 },
  ...extra,
});
const expected = (prompt: number[], n: number) => Array.from({ length: n }, (_, i) => `<${prompt[prompt.length - 1]! + 1 + i}>`).join('');

describe('scheduler with a fake forward pass', () => {
  it('requests that join and leave between steps each get exactly their own continuation', async () => {
    const model = fakeModel();
    const s = scheduler(model);
    const first = s.submit(request([10, 11, 12], 12, 1));
    const second = s.submit(request([100], 3, 2));
    await afterDecodes(s, 4);
    const third = s.submit(request([200, 201, 202, 203, 204], 6));
    const results = await Promise.all([first.result, second.result, third.result]);
    assert.deepEqual(
      results.map((r) => r.text),
      [expected([10, 11, 12], 12), expected([100], 3), expected([200, 201, 202, 203, 204], 6)],
    );
    assert.deepEqual(
      results.map((r) => r.finishReason),
      ['length', 'length', 'length'],
    );
    await s.idle();
    assert.equal(s.stats.running, 0);
    assert.equal(s.stats.kvFloats, 0, 'an idle scheduler holds no cache');
    // the three adapters' rows shared decode steps: slot per row as requested
    assert.ok(
      model.steps.some((st) => st.kind === 'decode' && st.slots.includes(1) && st.slots.includes(0)),
      'base and adapter rows decode in one step',
    );
  });

  it('a freed row is reused, so the decode batch does not grow past the live rows', async () => {
    const model = fakeModel();
    const s = scheduler(model, { maxBatch: 2 });
    const gens = [s.submit(request([1], 2)), s.submit(request([50], 30)), s.submit(request([300], 5)), s.submit(request([400], 5))];
    const results = await Promise.all(gens.map((g) => g.result));
    assert.deepEqual(
      results.map((r) => r.text),
      [expected([1], 2), expected([50], 30), expected([300], 5), expected([400], 5)],
    );
    assert.ok(
      model.steps.every((st) => st.batch <= 2),
      'never more rows than maxBatch',
    );
  });

  it("a long prompt is read in chunks that alternate with the running streams' decode steps", async () => {
    const model = fakeModel();
    const s = scheduler(model, { prefillChunk: 8, maxBatchTokens: 8 });
    const running = s.submit(request([5], 40));
    await afterDecodes(s, 2);
    const from = model.steps.length;
    const long = Array.from({ length: 30 }, (_, i) => 500 + i);
    const late = s.submit(request(long, 4));
    const results = await Promise.all([running.result, late.result]);
    assert.equal(results[1]!.text, expected(long, 4));
    assert.equal(results[0]!.text, expected([5], 40));
    const kinds = model.steps
      .slice(from)
      .map((st) => (st.kind === 'prefill' || st.seq > 1 ? 'P' : 'D'))
      .join('');
    // 30 tokens in chunks of 8: 4 prefill steps, never two in a row while a stream is decoding
    assert.equal((kinds.match(/P/g) ?? []).length, 4, kinds);
    assert.ok(!kinds.includes('PP'), `prefill chunks alternate with decode steps: ${kinds}`);
    assert.ok(
      model.steps.every((st) => st.batch * st.seq <= 8 || st.batch === 1),
      'prefill steps stay within maxBatchTokens',
    );
  });

  it('cancellation frees the row at the next step and calls onDone once', async () => {
    const model = fakeModel();
    const s = scheduler(model);
    const ctl = new AbortController();
    let done = 0;
    const cancelled = s.submit(request([7], 500, 0, { signal: ctl.signal, onDone: () => done++ }));
    const other = s.submit(request([9], 20));
    await afterDecodes(s, 3);
    ctl.abort();
    const before = s.steps.decode + s.steps.prefill;
    assert.equal((await cancelled.result).finishReason, 'cancelled');
    assert.ok(s.steps.decode + s.steps.prefill - before <= 1, 'cancelled within one step');
    assert.equal((await other.result).text, expected([9], 20));
    assert.equal(done, 1);
  });

  it('a failed forward pass fails the requests in that step and nothing else', async () => {
    const model = fakeModel({ failOn: (_n, input) => input.seq > 1 && input.ids.includes(666) });
    const s = scheduler(model, { maxBatch: 1 });
    const ok1 = s.submit(request([1], 3));
    const bad = s.submit(request([665, 666], 3));
    const ok2 = s.submit(request([3], 3));
    await assert.rejects(bad.result, /forward pass failed/);
    assert.equal((await ok1.result).text, expected([1], 3));
    assert.equal((await ok2.result).text, expected([3], 3));
  });

  it('prompt logprobs come from every position of every chunk, beside rows that read only their last', async () => {
    const model = fakeModel();
    const s = scheduler(model, { prefillChunk: 3 });
    const prompt = [20, 21, 22, 40, 41, 60, 61];
    const scored = s.submit(request(prompt, 2, 0, { logprobs: 1, promptLogprobs: true }));
    const plain = s.submit(request([7, 8, 9, 10], 2));
    const [r, p] = await Promise.all([scored.result, plain.result]);
    assert.equal(r.text, expected(prompt, 2));
    assert.equal(p.text, expected([7, 8, 9, 10], 2));
    assert.equal(p.promptLogprobs, null);
    assert.equal(p.logprobs, null);
    // The fake model puts logit 1 on (previous token + 1), 0 elsewhere.
    const likely = 1 - Math.log(Math.E + VOCAB - 1);
    const unlikely = -Math.log(Math.E + VOCAB - 1);
    const lps = r.promptLogprobs!;
    assert.equal(lps.length, prompt.length);
    assert.equal(lps[0], null);
    prompt.slice(1).forEach((tok, i) => {
      const lp = lps[i + 1]!;
      assert.equal(lp.token, tok);
      assert.ok(Math.abs(lp.logprob - (tok === prompt[i]! + 1 ? likely : unlikely)) < 1e-5, `prompt token ${i + 1}`);
      assert.deepEqual(
        lp.top.map((t) => t.token),
        [prompt[i]! + 1],
      );
    });
    assert.deepEqual(
      r.logprobs!.map((l) => l.token),
      [62, 63],
    );
    assert.ok(r.logprobs!.every((l) => Math.abs(l.logprob - likely) < 1e-5));
  });

  it('n choices read their prompt once and continue from copies of its cache row', async () => {
    const model = fakeModel();
    const s = scheduler(model, { prefillChunk: 2 });
    const prompt = [30, 31, 32, 33, 34];
    const gens = s.submitChoices(request(prompt, 4, 1, { logprobs: 0, promptLogprobs: true }), 3);
    const results = await Promise.all(gens.map((g) => g.result));
    assert.deepEqual(
      results.map((r) => r.text),
      [0, 1, 2].map(() => expected(prompt, 4)),
    );
    results.forEach((r) => assert.equal(r.promptLogprobs!.length, prompt.length));
    assert.equal(s.steps.prefill, 3, 'one chunked read of the prompt (chunks of 2, 2, 1), not one per choice');
    assert.ok(
      model.steps.some((st) => st.kind === 'decode' && st.liveRows === 3),
      'the three choices decode side by side',
    );
  });

  it('a choice that finds no free row reads the prompt itself; cancelling the first choice does not strand the others', async () => {
    const model = fakeModel();
    const s = scheduler(model, { maxBatch: 2 });
    const gens = s.submitChoices(request([40, 41], 3), 3);
    const results = await Promise.all(gens.map((g) => g.result));
    assert.deepEqual(
      results.map((r) => r.text),
      [0, 1, 2].map(() => expected([40, 41], 3)),
    );
    const [first, ...rest] = s.submitChoices(request([50, 51, 52], 3), 3);
    first!.cancel();
    assert.equal((await first!.result).finishReason, 'cancelled');
    for (const g of rest) assert.equal((await g.result).text, expected([50, 51, 52], 3));
  });

  it('max_tokens 0 reads the prompt and generates nothing', async () => {
    const s = scheduler(fakeModel());
    const r = await s.submit(request([1, 2, 3], 0, 0, { logprobs: 0, promptLogprobs: true })).result;
    assert.equal(r.text, '');
    assert.equal(r.completionTokens, 0);
    assert.equal(r.promptLogprobs!.length, 3);
  });

  it('min_tokens keeps EOS from ending the output early', async () => {
    const s = scheduler(fakeModel());
    const early = await s.submit(request([VOCAB - 4], 6)).result;
    assert.equal(early.completionTokens, 2);
    const held = await s.submit(request([VOCAB - 4], 6, 0, { minTokens: 5 })).result;
    assert.ok(held.completionTokens >= 5, `${held.completionTokens} tokens`);
    assert.ok(!held.text.includes(`<${VOCAB - 1}>`), 'EOS was never sampled before min_tokens');
  });

  it('rows stop at the context limit and at EOS', async () => {
    const model = fakeModel();
    const s = scheduler(model, { maxContext: 6 });
    const capped = await s.submit(request([1, 2], 100)).result;
    assert.equal(capped.completionTokens, 4);
    assert.equal(capped.finishReason, 'length');
    const eos = await s.submit(request([VOCAB - 4], 100)).result;
    assert.equal(eos.finishReason, 'stop');
    assert.equal(eos.text, expected([VOCAB - 4], 2));
  });

  it('an output grammar picks among the tokens it allows, ends at EOS, and each choice walks its own copy', async () => {
    // Allowed tokens per position: the fake model prefers last + 1, so 43 wins over 500 at position 1.
    const script = [[42], [43, 500], [7], [VOCAB - 1]];
    const walkers = { started: 0, disposed: 0 };
    const grammar = (rejectAt = -1): OutputConstraint => ({
      async start(): Promise<ConstraintWalker> {
        walkers.started++;
        let at = 0;
        return {
          async nextAllowed() {
            const mask = new Int32Array(Math.ceil(VOCAB / 32));
            for (const t of script[at]!) mask[t >> 5]! |= 1 << (t & 31);
            return mask;
          },
          accept: (token) => script[at++]!.includes(token) && at - 1 !== rejectAt,
          dispose: () => walkers.disposed++,
        };
      },
    });
    const s = scheduler(fakeModel());
    const [a, b] = s.submitChoices(request([10], 20, 0, { constraint: grammar() }), 2);
    const free = s.submit(request([100], 5));
    const broken = s.submit(request([200], 20, 0, { constraint: grammar(1) }));
    for (const r of await Promise.all([a!.result, b!.result])) {
      assert.equal(r.text, '<42><43><7>');
      assert.equal(r.finishReason, 'stop');
    }
    assert.equal((await free.result).text, expected([100], 5), 'an unconstrained row in the same steps is untouched');
    await assert.rejects(broken.result, { code: 'engine_error' });
    assert.deepEqual(walkers, { started: 3, disposed: 3 });
  });
});

describe('fair scheduling across tenants, with a fake forward pass', () => {
  const steps = (s: Scheduler) => s.steps.prefill + s.steps.decode;

  it('two backlogged tenants at weights 1:3 get 25% and 75% of the generated tokens', async () => {
    const s = scheduler(fakeModel(), { maxBatch: 8 });
    s.setTenantWeight('light', 1);
    s.setTenantWeight('heavy', 3);
    const tokens = { light: 0, heavy: 0 };
    let measuring = true;
    const gens = (['light', 'heavy'] as const).flatMap((tenant) =>
      Array.from({ length: 48 }, (_, i) =>
        s.submit(
          request([10 + i], 12, 0, {
            tenant,
            onToken: () => {
              // Shares hold while both tenants are backlogged: stop counting once either runs dry.
              if (measuring && s.tenants().some((t) => t.waiting === 0)) measuring = false;
              if (measuring) tokens[tenant]++;
            },
          }),
        ),
      ),
    );
    await Promise.all(gens.map((g) => g.result));
    const share = tokens.light / (tokens.light + tokens.heavy);
    assert.ok(tokens.light + tokens.heavy > 200, `measured ${tokens.light + tokens.heavy} tokens`);
    assert.ok(Math.abs(share - 0.25) <= 0.05, `light tenant's share ${share.toFixed(3)}`);
  });

  it("a newcomer of an idle tenant gets a row within 2 steps of another tenant's flood, and the paused rows resume exactly", async () => {
    const model = fakeModel();
    const s = scheduler(model, { maxBatch: 4 });
    const flood = Array.from({ length: 8 }, (_, i) => s.submit(request([100 * (i + 1)], 40, 0, { tenant: 'a' })));
    await afterDecodes(s, 5);
    const submitted = steps(s);
    let firstToken = -1;
    const quiet = s.submit(request([7, 8], 6, 1, { tenant: 'b', onToken: () => firstToken < 0 && (firstToken = steps(s)) }));
    assert.equal((await quiet.result).text, expected([7, 8], 6));
    assert.ok(firstToken - submitted <= 2, `first token ${firstToken - submitted} steps after arrival`);
    const results = await Promise.all(flood.map((g) => g.result));
    results.forEach((r, i) => assert.equal(r.text, expected([100 * (i + 1)], 40), `flood request ${i}`));
    const a = s.tenants().find((t) => t.tenant === 'a')!;
    assert.ok(a.preemptions >= 1, 'a row of the flood was paused');
    assert.ok(
      model.steps.every((st) => st.liveRows <= 4),
      'never more than maxBatch rows stepped',
    );
    await s.idle();
    assert.deepEqual([s.stats.paused, s.stats.kvFloats], [0, 0]);
  });

  it('a tenant back from idling shares the rows with the one that kept working, without banked credit', async () => {
    const s = scheduler(fakeModel(), { maxBatch: 4 });
    const first = s.submit(request([1], 30, 0, { tenant: 'b' }));
    await first.result;
    const flood = Array.from({ length: 12 }, (_, i) => s.submit(request([50 + i], 30, 0, { tenant: 'a' })));
    await afterDecodes(s, s.steps.decode + 60);
    const at = s.tenants();
    const counter = (tenant: string) => s.tenants().find((t) => t.tenant === tenant)!.counter;
    assert.ok(counter('a') > counter('b'), 'a was served while b idled');
    const back = Array.from({ length: 12 }, (_, i) => s.submit(request([500 + i], 30, 0, { tenant: 'b' })));
    assert.equal(counter('b'), counter('a'), 'b is lifted to the counter of a');
    assert.ok(at.find((t) => t.tenant === 'a')!.completionTokens > 0);
    // Had b kept its idle-time credit, it would take every row until it caught up; lifted, it shares them.
    const seen = new Set<string>();
    const from = s.steps.decode;
    while (s.steps.decode < from + 20) {
      for (const t of s.tenants()) if (t.running > 0) seen.add(t.tenant);
      await new Promise((r) => setImmediate(r));
    }
    assert.deepEqual([...seen].sort(), ['a', 'b']);
    for (const r of await Promise.all([...flood, ...back].map((g) => g.result))) assert.equal(r.completionTokens, 30);
  });

  it('priority orders one tenant’s waiting requests; cancelling a paused request frees its row', async () => {
    const s = scheduler(fakeModel(), { maxBatch: 1 });
    const order: number[] = [];
    const running = s.submit(request([1], 10, 0, { tenant: 'a' }));
    const queued = [5, -1, 0].map((priority) =>
      s.submit(request([20 + priority], 2, 0, { tenant: 'a', priority, onDone: () => order.push(priority) })),
    );
    await Promise.all([running.result, ...queued.map((g) => g.result)]);
    assert.deepEqual(order, [-1, 0, 5]);

    const t = scheduler(fakeModel(), { maxBatch: 2 });
    const flood = [t.submit(request([1], 200, 0, { tenant: 'a' })), t.submit(request([300], 200, 0, { tenant: 'a' }))];
    await afterDecodes(t, 3);
    const quiet = t.submit(request([9], 100, 0, { tenant: 'b' }));
    while (t.stats.paused === 0) await new Promise((r) => setImmediate(r));
    const paused = flood.find((g) => !g.cancelled)!;
    flood[1]!.cancel();
    flood[0]!.cancel();
    assert.equal((await paused.result).finishReason, 'cancelled');
    quiet.cancel();
    await t.idle();
    assert.deepEqual([t.stats.paused, t.stats.running, t.stats.kvFloats], [0, 0, 0]);
  });

  it('a cached prefix is copied into a fresh row (positions intact), only the rest is read, and cached rows are never stepped', async () => {
    const model = fakeModel();
    const prefixes = new PrefixCache(1 << 20, 2 * dims.layers * dims.kvHeads * dims.headDim * 4);
    const s = scheduler(model, { prefillChunk: 64 }, prefixes);
    const system = Array.from({ length: 2 * PREFIX_BLOCK + 5 }, (_, i) => 100 + i);
    const first = await s.submit(request(system, 4, 0, { prefixKey: 'base' })).result;
    assert.equal(first.cachedTokens, 0);
    await s.idle();
    const before = model.steps.length;
    const prompt = [...system.slice(0, 2 * PREFIX_BLOCK + 2), 600, 601];
    const hit = await s.submit(request(prompt, 5, 0, { prefixKey: 'base' })).result;
    assert.equal(hit.cachedTokens, 2 * PREFIX_BLOCK);
    assert.equal(hit.text, expected(prompt, 5));
    const steps = model.steps.slice(before);
    assert.equal(steps[0]!.kind, 'prefill');
    assert.equal(steps[0]!.seq, prompt.length - 2 * PREFIX_BLOCK, 'only the tokens after the cached blocks are read');
    assert.ok(
      steps.every((st) => st.batch === 1),
      'the cached prefixes take no row of a step',
    );
    await s.idle();
    // Another identity (another adapter, or another version of one) does not see these blocks.
    const other = await s.submit(request(prompt, 2, 1, { prefixKey: 'lora@2' })).result;
    assert.equal(other.cachedTokens, 0);
    assert.equal(other.text, expected(prompt, 2));
    assert.equal(prefixes.counters.hits, 2 * PREFIX_BLOCK);
  });
});
