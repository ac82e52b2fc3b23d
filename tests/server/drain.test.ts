import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { FAULT_HOOKS, spawnServer, writeTinyModel, type ChildServer } from '../helpers/child-server.js';
import { openStream } from '../helpers/sse.js';
import { tempDir } from '../helpers/adapters.js';

// Promise 1 (README, Reliability): SIGTERM drains. A real server process; its forward passes are
// held by the test gate (fault-hooks.ts), so streams are provably in flight when the signal lands.
describe('drain on SIGTERM', { concurrency: 2 }, () => {
  let modelDir: string;
  before(() => {
    modelDir = writeTinyModel(join(tempDir(), 'tiny-llama'));
  });

  const start = (drainMs: number) =>
    spawnServer(
      ['--model', modelDir, '--adapters', join(tempDir(), 'adapters'), '--max-tokens', '200', '--drain-timeout-ms', String(drainMs)],
      { preload: [FAULT_HOOKS], env: { LORASERVE_TEST_GATE: '1' } },
    );
  const chat = (extra: Record<string, unknown>) => ({
    model: 'tiny-llama',
    messages: [{ role: 'user', content: 'hello' }],
    ignore_eos: true,
    stream: true,
    ...extra,
  });
  const servers: ChildServer[] = [];
  after(() => Promise.all(servers.map((s) => s.stop())));

  /** Requests the engine holds (running or queued), read from /metrics. */
  async function held(s: ChildServer): Promise<number> {
    const text = await (await fetch(`${s.url}/metrics`)).text();
    return ['loraserve_running_requests', 'loraserve_queue_depth'].reduce(
      (n, m) => n + Number(new RegExp(`^${m} (\\d+)$`, 'm').exec(text)?.[1] ?? 0),
      0,
    );
  }

  /** Waits until the engine holds `n` requests behind the held step. */
  async function holding(s: ChildServer, n: number): Promise<void> {
    while ((await held(s)) < n) await new Promise((r) => setTimeout(r, 20));
  }

  /** Opens streams and waits until the engine has admitted them (their first chunk waits for the held first token). */
  async function admitted(s: ChildServer, n: number, maxTokens: number) {
    const streams = await Promise.all(
      Array.from({ length: n }, () =>
        openStream(`${s.url}/v1/chat/completions`, chat({ max_tokens: maxTokens, stream_options: { include_usage: true } })),
      ),
    );
    await holding(s, n);
    return streams;
  }

  async function assertRefusing(s: ChildServer) {
    const ready = await fetch(`${s.url}/ready`);
    assert.equal(ready.status, 503);
    assert.equal((await ready.json()).error.code, 'shutting_down');
    const refused = await fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chat({ stream: false, max_tokens: 4 })),
    });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '5');
    assert.equal((await refused.json()).error.code, 'shutting_down');
    assert.equal((await fetch(`${s.url}/health`)).status, 200);
  }

  it('lets running streams finish with [DONE] while refusing new work, then exits 0', { timeout: 180_000 }, async () => {
    const s = await start(600_000);
    servers.push(s);
    const streams = await admitted(s, 3, 40);
    s.proc.kill('SIGTERM');
    await s.waitFor(/draining: new requests get 503/);
    await assertRefusing(s);
    s.proc.kill('SIGUSR2');
    for (const st of streams) {
      const events = await st.done;
      assert.equal(events.at(-1), '[DONE]');
      const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
      assert.ok(
        chunks.every((c) => !c.error),
        events.join('\n'),
      );
      assert.equal(chunks.at(-2).choices[0].finish_reason, 'length');
      assert.equal(chunks.at(-1).usage.completion_tokens, 40);
    }
    assert.deepEqual(await s.exited, { code: 0, signal: null });
  });

  it('at --drain-timeout-ms cancels what is still running with an error chunk, then exits 0', { timeout: 180_000 }, async () => {
    const s = await start(300);
    servers.push(s);
    const streams = await admitted(s, 2, 200);
    const plain = fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chat({ stream: false, max_tokens: 200 })),
    });
    // Admitted once the engine holds three requests (running or queued) behind the held step.
    await holding(s, 3);
    s.proc.kill('SIGTERM');
    await s.waitFor(/drain timeout: cancelling/);
    for (const st of streams) {
      const events = await st.done;
      assert.equal(events.at(-1), '[DONE]');
      const error = JSON.parse(events.at(-2)!).error;
      assert.equal(error.code, 'shutting_down');
      assert.match(error.message, /drain timeout 300 ms/);
    }
    const r = await plain;
    assert.equal(r.status, 503);
    assert.equal((await r.json()).error.code, 'shutting_down');
    // The engine is still held mid-step; once released it frees the cancelled rows and the process exits.
    s.proc.kill('SIGUSR2');
    assert.deepEqual(await s.exited, { code: 0, signal: null });
  });
});
