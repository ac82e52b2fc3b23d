/**
 * The child process one fine-tuning job trains in (forked by the job manager). It drives the
 * project's trainer and reports over IPC: each step's loss, each epoch's validation loss and
 * checkpoint folder, then the result. A `cancel` message, or the parent going away (the IPC
 * channel closing), aborts training between two steps; nothing it writes is visible to the API
 * until the parent has put it in the adapter store.
 */
import { join } from 'node:path';
import { train, TRAIN_DEFAULTS, type TrainOptions } from '../train/index.js';
import type { ToParent, ToWorker, WorkerJob } from './worker-protocol.js';

const aborted = new AbortController();

const send = (message: ToParent) =>
  new Promise<void>((resolve) => {
    if (!process.connected) return resolve();
    process.send!(message, undefined, {}, () => resolve());
  });

async function run(job: WorkerJob): Promise<void> {
  const options: TrainOptions = {
    ...TRAIN_DEFAULTS,
    ...job.train,
    valSplit: 0,
    quiet: true,
    signal: aborted.signal,
    onStep: (s) => void send({ type: 'step', ...s }),
    onEpoch: async ({ epoch, step, valLoss, saveAdapter }) => {
      // The last epoch's adapter is the job's result; the epochs before it are checkpoints.
      let dir: string | null = null;
      if (epoch >= job.firstCheckpointEpoch && epoch < job.train.epochs) {
        dir = join(job.checkpointsDir, `step-${step}`);
        await saveAdapter(dir);
      }
      await send({ type: 'epoch', epoch, step, valLoss, dir });
    },
  };
  try {
    const result = await train(options);
    await send({ type: 'done', steps: result.steps, seconds: result.seconds, backend: result.backend });
    process.exit(0);
  } catch (err) {
    const e = err as Error & { code?: string };
    // The trainer names lines by path and its CLI flag; the job's owner knows its files by role.
    const message = e.message
      .replaceAll(`${job.train.dataPath}:`, 'training file, line ')
      .replaceAll(`${job.train.valDataPath}:`, 'validation file, line ')
      .replace(`longer than --max-seq ${job.train.maxSeq}`, `longer than the model's context (${job.train.maxSeq})`);
    await send({ type: 'failed', code: aborted.signal.aborted ? 'cancelled' : (e.code ?? 'training_failed'), message });
    process.exit(1);
  }
}

process.on('message', (message: ToWorker) => {
  if (message.type === 'start') void run(message.job);
  else if (message.type === 'cancel') aborted.abort(new Error('the job was cancelled'));
});
process.on('disconnect', () => {
  aborted.abort(new Error('the server went away'));
  // A step in progress finishes first; then the abort above ends the run. Nothing is waiting for it.
  setTimeout(() => process.exit(1), 60_000).unref();
});
