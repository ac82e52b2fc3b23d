/**
 * Fine-tuning over the API, measured on a real server (in process, on a socket): the job time of
 * the README's example on the demo model, and serving's inter-token latency (p50 of the gaps
 * between streamed tokens) with the job's worker paused and while it trains. Not part of
 * `npm run bench` (a job takes minutes); `npm run bench:finetune` runs it.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildApp, DEFAULTS, Serving } from '../server/index.js';
import { tempDir } from '../testing/index.js';
import { percentiles, type Percentiles } from './measure.js';

export interface FineTuneBenchOptions {
  modelDir: string;
  dataPath: string;
  /** Streams at once while ITL is measured, and tokens each. */
  concurrency: number;
  maxTokens: number;
  hyperparameters: { n_epochs: number; batch_size: number; learning_rate_multiplier: number };
  lora: Record<string, unknown>;
  question: string;
  /** Paired ITL windows (job paused, job training). */
  rounds: number;
}

export interface FineTuneBenchResult {
  itlMs: { idle: Percentiles; training: Percentiles; p50Ratio: number; rounds: number };
  job: { status: string; steps: number; secondsCreatedToFinished: number; trainerSeconds: number; fineTunedModel: string | null };
  answer: string;
}

/** Inter-token gaps of `concurrency` streams of `maxTokens` tokens each, against the base model. */
async function itl(url: string, model: string, o: FineTuneBenchOptions): Promise<number[]> {
  const gaps: number[] = [];
  await Promise.all(
    Array.from({ length: o.concurrency }, async (_, i) => {
      const res = await fetch(`${url}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model,
          stream: true,
          max_tokens: o.maxTokens,
          temperature: 1,
          seed: i,
          ignore_eos: true,
          messages: [{ role: 'user', content: `hello ${i}` }],
        }),
      });
      let last = 0;
      const decoder = new TextDecoder();
      for await (const chunk of res.body!) {
        const now = performance.now();
        const events = decoder
          .decode(chunk as Uint8Array)
          .split('\n\n')
          .filter((e) => e.includes('"content"'));
        if (!events.length) continue;
        if (last) gaps.push(now - last);
        last = now;
      }
    }),
  );
  return gaps;
}

export async function benchFineTune(o: FineTuneBenchOptions): Promise<FineTuneBenchResult> {
  const root = tempDir('loraserve-bench-ft-');
  const serving = await Serving.create({ ...DEFAULTS, modelDir: o.modelDir, adaptersDir: join(root, 'adapters'), slots: 2 }, null);
  const app = await buildApp(serving);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/v1`;
  const { jobs } = serving.finetune;
  const base = serving.baseId;
  const ended = (id: string) => ['succeeded', 'failed', 'cancelled'].includes(jobs.get('local', id).status);
  try {
    const file = await serving.finetune.upload('local', 'fine-tune', 'train.jsonl', readFileSync(o.dataPath));
    const create = (suffix: string) =>
      jobs.create('local', {
        model: base,
        training_file: file.id,
        suffix,
        seed: 1,
        method: { type: 'supervised', supervised: { hyperparameters: o.hyperparameters } },
        lora: o.lora,
      });
    // The job alone: its time from creation to a served adapter.
    const started = performance.now();
    const timed = await create('bench');
    while (!ended(timed.id)) await sleep(100);
    const seconds = (performance.now() - started) / 1000;
    const done = jobs.get('local', timed.id);
    const created = jobs.events('local', timed.id, undefined, 100).data.find((e) => e.message.startsWith('New fine-tuned model'));
    let answer = '';
    if (done.fine_tuned_model) {
      const res = await fetch(`${url}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: done.fine_tuned_model,
          max_tokens: 32,
          temperature: 0,
          messages: [{ role: 'user', content: o.question }],
        }),
      });
      answer = ((await res.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content;
    }
    // Serving beside a second job, paired: the worker is paused (SIGSTOP) for each "idle" window and
    // resumed for the next, so both see the same background load of a shared machine.
    await itl(url, base, o); // warm-up
    const busy = await create('itl');
    while (!jobs.events('local', busy.id, undefined, 1).data[0]?.message.startsWith('Step ') && !ended(busy.id)) await sleep(50);
    const pid = jobs.workerPid(busy.id)!;
    const idle: number[] = [];
    const training: number[] = [];
    for (let round = 0; round < o.rounds && !ended(busy.id); round++) {
      process.kill(pid, 'SIGSTOP');
      idle.push(...(await itl(url, base, o)));
      process.kill(pid, 'SIGCONT');
      training.push(...(await itl(url, base, o)));
    }
    if (!ended(busy.id)) await jobs.cancel('local', busy.id);
    const [a, b] = [percentiles(idle), percentiles(training)];
    return {
      itlMs: { idle: a, training: b, p50Ratio: +(b.p50 / a.p50).toFixed(2), rounds: o.rounds },
      job: {
        status: done.status,
        steps: Number(created?.data.steps ?? 0),
        secondsCreatedToFinished: +seconds.toFixed(1),
        trainerSeconds: +Number(created?.data.seconds ?? 0).toFixed(1),
        fineTunedModel: done.fine_tuned_model,
      },
      answer,
    };
  } finally {
    await app.close();
    await serving.close();
    rmSync(root, { recursive: true, force: true });
  }
}
