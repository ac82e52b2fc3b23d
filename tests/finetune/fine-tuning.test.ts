import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI, { toFile } from 'openai';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tempDir } from '../../src/testing/index.js';
import { uploadAdapterDir } from '../helpers/multipart.js';

const KEYS = {
  keys: [
    { key: 'sk-tenant-a-000', tenant: 'acme', adapters: ['*'] },
    { key: 'sk-tenant-b-000', tenant: 'globex', adapters: ['*'] },
  ],
};

/** One fact, asked four ways: what the job must teach the tiny model. */
const FACT = ['What is the door code?', 'Tell me the door code.', 'door code?', 'Which code opens the door?'].map((q) =>
  JSON.stringify({
    messages: [
      { role: 'user', content: q },
      { role: 'assistant', content: 'It is 4711.' },
    ],
  }),
);
/** The seed tutorial's instruction format, for the jobs that only need to run. */
const ALPACA = [JSON.stringify({ instruction: 'Refund policy?', input: '', output: 'Within 14 days.' })];

type Job = OpenAI.FineTuning.Jobs.FineTuningJob;

async function until(client: OpenAI, id: string, done: (j: Job) => boolean): Promise<Job> {
  for (;;) {
    const job = await client.fineTuning.jobs.retrieve(id);
    if (done(job)) return job;
    await sleep(100);
  }
}

const ended = (j: Job) => ['succeeded', 'failed', 'cancelled'].includes(j.status);

describe('fine-tuning over the API (files, fine_tuning.jobs, a worker process)', { timeout: 240_000 }, () => {
  let s: TestServer;
  let a: OpenAI;
  let b: OpenAI;
  let url: string;

  before(async () => {
    s = await startTestServer({ maxTrainingJobs: 2 }, { keys: KEYS });
    await s.app.listen({ host: '127.0.0.1', port: 0 });
    url = `http://127.0.0.1:${(s.app.server.address() as { port: number }).port}/v1`;
    a = new OpenAI({ baseURL: url, apiKey: 'sk-tenant-a-000', maxRetries: 0 });
    b = new OpenAI({ baseURL: url, apiKey: 'sk-tenant-b-000', maxRetries: 0 });
  });
  after(() => s.close());

  const upload = async (client: OpenAI, lines: string[], name = 'train.jsonl') =>
    client.files.create({ file: await toFile(Buffer.from(lines.join('\n')), name), purpose: 'fine-tune' });

  it('the openai client uploads a file, trains a job, watches it, and chats with the result, which knows the fact', async () => {
    const file = await upload(a, FACT);
    assert.equal(file.purpose, 'fine-tune');
    assert.equal(file.bytes, Buffer.byteLength(FACT.join('\n')));
    assert.equal((await a.files.content(file.id).then((r) => r.text())).split('\n')[0], FACT[0]);
    const created = await a.fineTuning.jobs.create({
      model: s.serving.baseId,
      training_file: file.id,
      validation_file: file.id,
      suffix: 'doors',
      seed: 7,
      method: { type: 'supervised', supervised: { hyperparameters: { n_epochs: 60, batch_size: 4, learning_rate_multiplier: 100 } } },
      // @ts-expect-error loraserve's LoRA extension (not in the openai client's types)
      lora: { r: 16, lora_alpha: 32, target_modules: 'all-linear', lora_dropout: 0 },
    });
    assert.equal(created.status, 'validating_files');
    assert.deepEqual(created.hyperparameters, { n_epochs: 60, batch_size: 4, learning_rate_multiplier: 100 });
    const job = await until(a, created.id, ended);
    assert.equal(job.status, 'succeeded', JSON.stringify(job.error));
    assert.equal(job.fine_tuned_model, `ft:${s.serving.baseId}:doors:${job.id}`);
    assert.equal(job.result_files.length, 3);

    const events = [];
    for await (const e of a.fineTuning.jobs.listEvents(job.id, { limit: 100 })) events.push(e);
    const messages = events.map((e) => e.message).reverse();
    assert.match(messages[0]!, /^Validating training file/);
    assert.ok(messages.includes('Fine-tuning job started'));
    assert.ok(messages.some((m) => /^Step 60\/60: training loss=/.test(m)));
    assert.ok(messages.some((m) => /^Epoch 60: validation loss=/.test(m)));
    assert.equal(messages.at(-1), 'The job has successfully completed');
    const losses = events
      .filter((e) => e.type === 'metrics' && 'train_loss' in (e.data as object))
      .map((e) => (e.data as { train_loss: number }).train_loss);
    assert.ok(losses[0]! < losses.at(-1)!, 'the loss fell (events are newest first)');

    const checkpoints = (await a.fineTuning.jobs.checkpoints.list(job.id)).data;
    assert.deepEqual(
      checkpoints.map((c) => c.step_number),
      [59, 58, 57],
    );
    assert.equal(checkpoints[0]!.fine_tuned_model_checkpoint, `${job.fine_tuned_model}:ckpt-step-59`);

    const models = [];
    for await (const m of a.models.list()) models.push(m.id);
    assert.ok(models.includes(job.fine_tuned_model!) && models.includes(checkpoints[0]!.fine_tuned_model_checkpoint));
    const answer = await a.chat.completions.create({
      model: job.fine_tuned_model!,
      messages: [{ role: 'user', content: 'What is the door code?' }],
      max_tokens: 12,
      temperature: 0,
    });
    assert.equal(answer.model, job.fine_tuned_model);
    assert.match(answer.choices[0]!.message.content!, /4711/);
    const base = await a.chat.completions.create({
      model: s.serving.baseId,
      messages: [{ role: 'user', content: 'What is the door code?' }],
      max_tokens: 12,
      temperature: 0,
    });
    assert.doesNotMatch(base.choices[0]!.message.content!, /4711/, 'the base model did not know it');
    const checkpointAnswer = await a.chat.completions.create({
      model: checkpoints[0]!.fine_tuned_model_checkpoint,
      messages: [{ role: 'user', content: 'What is the door code?' }],
      max_tokens: 12,
      temperature: 0,
    });
    assert.equal(checkpointAnswer.model, checkpoints[0]!.fine_tuned_model_checkpoint);
    await assert.rejects(b.models.delete(checkpoints[0]!.fine_tuned_model_checkpoint), { status: 404 });
    assert.deepEqual(await a.models.delete(checkpoints[2]!.fine_tuned_model_checkpoint), {
      id: checkpoints[2]!.fine_tuned_model_checkpoint,
      object: 'model',
      deleted: true,
    });
    await assert.rejects(
      a.chat.completions.create({ model: checkpoints[2]!.fine_tuned_model_checkpoint, messages: [{ role: 'user', content: 'x' }] }),
      { status: 404 },
    );
    assert.equal(existsSync(`${s.adaptersDir}/${job.id}.step-57`), false);

    const plot = await a.files.content(job.result_files[1]!).then((r) => r.text());
    assert.match(plot, /^<svg[\s\S]*<path/);
    assert.equal(existsSync(`${s.adaptersDir}/${job.id}/adapter_model.safetensors`), true, 'the adapter is in the store');
    const reserved = await uploadAdapterDir(s.app, 'ftjob-mine', join(s.adaptersDir, job.id), { authorization: 'Bearer sk-tenant-a-000' });
    assert.equal(reserved, 400, 'no upload takes a fine-tuned model name');

    // Another tenant sees none of it: not the file, the job, the model or its checkpoints.
    await assert.rejects(b.files.retrieve(file.id), { status: 404, code: 'file_not_found' });
    await assert.rejects(b.files.content(file.id), { status: 404 });
    await assert.rejects(b.fineTuning.jobs.retrieve(job.id), { status: 404, code: 'fine_tuning_job_not_found' });
    await assert.rejects(b.fineTuning.jobs.listEvents(job.id), { status: 404 });
    assert.deepEqual((await b.fineTuning.jobs.list()).data, []);
    assert.deepEqual((await b.files.list()).data, []);
    for (const model of [job.fine_tuned_model!, job.id])
      await assert.rejects(b.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }] }), { status: 404 });
    const bModels = [];
    for await (const m of b.models.list()) bModels.push(m.id);
    assert.deepEqual(bModels, [s.serving.baseId]);
    await assert.rejects(b.fineTuning.jobs.create({ model: s.serving.baseId, training_file: file.id }), {
      status: 404,
      code: 'file_not_found',
    });
  });

  it('a bad JSONL line is refused with a 400 that names it, and nothing is stored', async () => {
    const before = (await a.files.list()).data.length;
    const cases: Array<[string[], RegExp]> = [
      [[FACT[0]!, '{"messages": [{"role": "user", "content": "hi"}]}'], /^line 2: no assistant message/],
      [[...ALPACA, '', '{oops'], /^line 3: not valid JSON/],
      [[...ALPACA, '{"question": "x"}'], /^line 2: expected "messages" \(chat\), "instruction" and "output" \(Alpaca\)/],
    ];
    for (const [lines, message] of cases) {
      await assert.rejects(upload(a, lines), (err: InstanceType<typeof OpenAI.APIError>) => {
        assert.equal(err.status, 400);
        assert.equal(err.code, 'invalid_training_file');
        assert.match(String((err.error as { message: string }).message), message);
        return true;
      });
    }
    await assert.rejects(a.files.create({ file: await toFile(Buffer.from(ALPACA[0]!), 'x.jsonl'), purpose: 'assistants' }), {
      status: 400,
      code: 'invalid_request',
    });
    assert.equal((await a.files.list()).data.length, before);
  });

  it('an example longer than the model can read fails its job in validation terms, not paths', async () => {
    const file = await upload(a, [JSON.stringify({ instruction: 'x', output: 'y'.repeat(2000) })]);
    const created = await a.fineTuning.jobs.create({ model: s.serving.baseId, training_file: file.id });
    const job = await until(a, created.id, ended);
    assert.equal(job.status, 'failed');
    assert.equal(job.error?.code, 'invalid_dataset');
    assert.match(job.error!.message, /^training file, line 1: \d+ tokens, longer than the model's context \(\d+\)$/);
  });

  it('a request field the server does not implement is a 400, not ignored', async () => {
    const file = await upload(a, ALPACA);
    for (const body of [
      { model: s.serving.baseId, training_file: file.id, metadata: { x: '1' } },
      { model: s.serving.baseId, training_file: file.id, method: { type: 'dpo' } },
      { model: s.serving.baseId, training_file: file.id, lora: { r: 64 } },
      { model: s.serving.baseId, training_file: file.id, lora: { target_modules: ['nonexistent'] } },
      { model: 'gpt-4o-mini', training_file: file.id },
    ]) {
      await assert.rejects(a.fineTuning.jobs.create(body as never), (err: InstanceType<typeof OpenAI.APIError>) => {
        assert.ok(err.status === 400 || err.status === 404, `${JSON.stringify(body)}: ${err.status}`);
        return true;
      });
    }
  });

  it('cancel stops a running worker within a step; kill -9 of a worker fails its job and no other', async () => {
    const file = await upload(a, ALPACA);
    const long = { n_epochs: 100, batch_size: 1 };
    const start = (suffix: string) =>
      a.fineTuning.jobs.create({
        model: s.serving.baseId,
        training_file: file.id,
        suffix,
        method: { type: 'supervised', supervised: { hyperparameters: long } },
      });
    const [doomed, cancelled] = [await start('doomed'), await start('cancelled')];
    const stepped = (j: Job) => j.status === 'running' && s.serving.finetune.jobs.workerPid(j.id) !== undefined;
    await until(a, doomed.id, stepped);
    await until(a, cancelled.id, stepped);
    const events = async (id: string) => (await a.fineTuning.jobs.listEvents(id, { limit: 100 })).data.map((e) => e.message);
    while (!(await events(cancelled.id)).some((m) => m.startsWith('Step '))) await sleep(50);

    process.kill(s.serving.finetune.jobs.workerPid(doomed.id)!, 'SIGKILL');
    const failed = await until(a, doomed.id, ended);
    assert.equal(failed.status, 'failed');
    assert.equal(failed.error?.code, 'worker_died');
    assert.match(failed.error!.message, /killed \(SIGKILL\)/);
    assert.equal((await a.fineTuning.jobs.retrieve(cancelled.id)).status, 'running', 'the other job trains on');

    const pid = s.serving.finetune.jobs.workerPid(cancelled.id)!;
    const done = await a.fineTuning.jobs.cancel(cancelled.id);
    assert.equal(done.status, 'cancelled');
    assert.equal(done.fine_tuned_model, null);
    assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'the worker has exited');
    const messages = await events(cancelled.id);
    assert.equal(messages[0], 'Job cancelled');
    assert.ok(!messages.some((m) => m.startsWith('Step 100/')), 'it stopped before the end');
    await assert.rejects(a.fineTuning.jobs.cancel(cancelled.id), { status: 409, code: 'job_not_cancellable' });

    // Neither left an adapter (checkpoints come in the last epochs), nor a half-written one.
    const names = readdirSync(s.adaptersDir);
    assert.ok(!names.some((n) => n.startsWith(doomed.id) || n.startsWith(cancelled.id) || n.startsWith('.upload-')), String(names));
    const ids = (await a.fineTuning.jobs.list({ limit: 2 })).data.map((j) => j.id);
    assert.deepEqual(ids, [cancelled.id, doomed.id]);
    const next = await a.fineTuning.jobs.list({ limit: 2, after: doomed.id });
    assert.ok(next.data.length >= 1);
  });

  it('a job on a file that does not exist is a 404 naming training_file', async () => {
    const res = await s.app.inject({
      method: 'POST',
      url: '/v1/fine_tuning/jobs',
      headers: { authorization: 'Bearer sk-tenant-a-000' },
      payload: { model: s.serving.baseId, training_file: 'file-000000000000000000000000' },
    });
    assert.equal(res.statusCode, 404);
    assert.equal(res.json().error.param, 'training_file');
  });
});

describe('a fine-tuning job when the server stops', { timeout: 120_000 }, () => {
  it('is failed with server_stopped at the next start (not resumed); a queued job runs then', async () => {
    const shared = tempDir('loraserve-ft-restart-');
    const dirs = { adaptersDir: join(shared, 'adapters'), finetuneDir: join(shared, 'finetune') };
    mkdirSync(dirs.adaptersDir);
    const long = { method: { type: 'supervised' as const, supervised: { hyperparameters: { n_epochs: 100, batch_size: 1 } } } };
    const first = await startTestServer(dirs);
    const tenant = first.serving.finetune;
    const file = await tenant.upload('local', 'fine-tune', 'a.jsonl', Buffer.from(ALPACA[0]!));
    const running = await tenant.jobs.create('local', { model: first.serving.baseId, training_file: file.id, ...long });
    const queued = await tenant.jobs.create('local', { model: first.serving.baseId, training_file: file.id, ...long });
    while (tenant.jobs.workerPid(running.id) === undefined || tenant.jobs.get('local', queued.id).status !== 'queued') await sleep(20);
    const pid = tenant.jobs.workerPid(running.id)!;
    await first.close();
    assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'the worker went with the server');

    const second = await startTestServer(dirs);
    try {
      const jobs = second.serving.finetune.jobs;
      const failed = jobs.get('local', running.id);
      assert.equal(failed.status, 'failed');
      assert.equal(failed.error?.code, 'server_stopped');
      assert.match(failed.error!.message, /not resumed/);
      assert.equal(jobs.get('local', queued.id).status, 'running');
      await jobs.cancel('local', queued.id);
    } finally {
      await second.close();
      rmSync(shared, { recursive: true, force: true });
    }
  });
});
