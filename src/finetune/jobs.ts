/**
 * OpenAI's fine-tuning jobs, per tenant. A job snapshots its files into its own folder, is
 * validated (`validating_files`), waits its turn (`queued`: at most `maxJobs` train at once), and
 * trains in a forked worker process at the lowest CPU priority with its own thread budget
 * (`running`), so serving goes on beside it. Each epoch's checkpoint and the final adapter are put
 * into the adapter store through the publisher (validated, atomic) and named in OpenAI's shape,
 * `ft:<base>:<suffix>:<job id>`, visible to the job's tenant only.
 *
 * Faults: a worker that dies (kill -9, out of memory) fails its own job and no other; a job running
 * when the server stops (or crashes) is failed with `server_stopped` and not resumed (its partial
 * training is discarded; checkpoints already published stay usable); jobs still queued or
 * validating then run at the next start. The job record is one JSON file per job, replaced
 * atomically.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { setPriority } from 'node:os';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  FineTuningJobNotFoundError,
  InvalidRequestError,
  JobNotCancellableError,
  type LoraServeError,
  ModelNotFoundError,
} from '../errors.js';
import type { LinearModule } from '../model/index.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { tenantKey, type FileStore } from './file-store.js';
import {
  BASE_LEARNING_RATE,
  resolveHyperparameters,
  resolveLora,
  type Auto,
  type Hyperparameters,
  type LoraSettings,
  type RequestedHyperparameters,
} from './hyperparameters.js';
import { checkTrainingFile, type FileLimits } from './training-file.js';
import type { ToParent, ToWorker, WorkerJob } from './worker-protocol.js';

export type JobStatus = 'validating_files' | 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface JobError {
  code: string;
  message: string;
  param: string | null;
}

export interface CreateJob {
  model: string;
  training_file: string;
  validation_file?: string | null;
  suffix?: string | null;
  seed?: number | null;
  method?: { type: 'supervised'; supervised?: { hyperparameters?: RequestedHyperparameters } };
  lora?: Partial<LoraSettings>;
}

export interface Job {
  object: 'fine_tuning.job';
  id: string;
  model: string;
  created_at: number;
  finished_at: number | null;
  fine_tuned_model: string | null;
  /** The tenant (OpenAI's organization). */
  organization_id: string;
  result_files: string[];
  status: JobStatus;
  training_file: string;
  validation_file: string | null;
  /** "auto" until the files are validated, then the values used. */
  hyperparameters: JobHyperparameters;
  trained_tokens: null;
  error: JobError | null;
  seed: number;
  estimated_finish: null;
  integrations: null;
  metadata: null;
  user_provided_suffix: string | null;
  method: { type: 'supervised'; supervised: { hyperparameters: JobHyperparameters } };
  /** loraserve's extension: the LoRA settings trained. */
  lora: LoraSettings;
}

type JobHyperparameters = { [K in keyof Hyperparameters]: Auto<number> };

export interface JobEvent {
  object: 'fine_tuning.job.event';
  id: string;
  created_at: number;
  level: 'info' | 'warn' | 'error';
  message: string;
  data: Record<string, unknown>;
  type: 'message' | 'metrics';
}

export interface Checkpoint {
  object: 'fine_tuning.job.checkpoint';
  id: string;
  created_at: number;
  fine_tuned_model_checkpoint: string;
  fine_tuning_job_id: string;
  metrics: { step: number; train_loss: number | null; valid_loss: number | null };
  step_number: number;
}

/** Everything kept about a job: the OpenAI object, its events (oldest first), checkpoints and loss curve. */
interface JobRecord {
  job: Job;
  tenant: string;
  /** Creation order (created_at has whole seconds only). */
  createdMs: number;
  events: JobEvent[];
  checkpoints: Checkpoint[];
  /** The adapter store's name of each fine-tuned model and checkpoint, by its `ft:` name. */
  adapters: Record<string, string>;
  trainLoss: Array<{ step: number; epoch: number; loss: number }>;
  valLoss: Array<{ step: number; epoch: number; loss: number }>;
  examples: number | null;
}

/** What the job manager needs from the server: the base model, and a way into the adapter store. */
export interface FineTuneHost {
  baseId: string;
  modelDir: string;
  maxRank: number;
  /** The layers the server gives LoRA slots: a job whose target modules match none of them is refused. */
  servableModules: readonly LinearModule[];
  /** Longest example (in tokens) a job trains on: the model's context. */
  maxSeq: number;
  /** Validates a PEFT folder against the engine and stores it under `name` atomically. */
  publish(name: string, dir: string): Promise<void>;
  /** Removes an adapter this manager published (a fine-tuned model its tenant deletes). */
  unpublish(name: string): Promise<void>;
}

export interface JobLimits {
  /** Jobs training at once; the rest wait in `queued`. */
  maxJobs: number;
  /** Threads each worker's trainer may use. */
  threads: number;
  files: FileLimits;
}

/** Adapter store names of fine-tuned models start so; uploads may not use it. */
export const FINE_TUNED_PREFIX = 'ftjob-';
/** Checkpoints per job: the ends of the last epochs before the final one (OpenAI keeps the last three epochs'). */
const CHECKPOINTS = 3;
/** How long a cancelled worker has to stop at a step boundary before it is killed. */
const CANCEL_GRACE_MS = 10_000;
const TERMINAL: ReadonlySet<JobStatus> = new Set(['succeeded', 'failed', 'cancelled']);
const JOB_ID = /^ftjob-[0-9a-f]{24}$/;
const now = () => Math.floor(Date.now() / 1000);
const newId = (prefix: string) => `${prefix}${randomBytes(12).toString('hex')}`;

const WORKER = fileURLToPath(new URL(`./training-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

export interface Page<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
}

/** OpenAI's cursor pagination over a newest-first list: the items after the one with id `after`. */
export function page<T extends { id: string }>(items: T[], after: string | undefined, limit: number): Page<T> {
  const from = after === undefined ? 0 : items.findIndex((i) => i.id === after) + 1;
  const data = from === 0 && after !== undefined ? [] : items.slice(from, from + limit);
  return { object: 'list', data, has_more: from + limit < items.length };
}

export class JobManager {
  private readonly records = new Map<string, JobRecord>();
  private readonly workers = new Map<string, { child: ChildProcess; cancelled: boolean; exited: Promise<void> }>();
  /** Each job's record changes one at a time (worker messages, cancel, publish). */
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly queue: string[] = [];
  private closed = false;
  private lastCreated = 0;

  private constructor(
    private readonly root: string,
    private readonly files: FileStore,
    private readonly host: FineTuneHost,
    private readonly limits: JobLimits,
  ) {}

  /** Loads every job; those a stop interrupted while running are failed, queued ones queue again. */
  static async open(root: string, files: FileStore, host: FineTuneHost, limits: JobLimits): Promise<JobManager> {
    const manager = new JobManager(root, files, host, limits);
    for (const tenant of await readdir(root).catch(() => [] as string[])) {
      for (const id of await readdir(join(root, tenant)).catch(() => [] as string[])) {
        if (!JOB_ID.test(id)) continue;
        const record = JSON.parse(await readFile(join(root, tenant, id, 'job.json'), 'utf8').catch(() => 'null')) as JobRecord | null;
        if (!record) {
          // Created but never recorded: nothing of it was visible.
          await rm(join(root, tenant, id), { recursive: true, force: true });
          continue;
        }
        manager.records.set(id, record);
        if (record.job.status === 'running') await manager.fail(record, 'server_stopped', STOPPED);
        else if (!TERMINAL.has(record.job.status)) manager.queue.push(id);
      }
    }
    manager.queue.sort((a, b) => manager.records.get(a)!.createdMs - manager.records.get(b)!.createdMs);
    for (const id of [...manager.queue]) {
      const record = manager.records.get(id)!;
      if (record.job.status === 'validating_files') {
        manager.queue.splice(manager.queue.indexOf(id), 1);
        void manager.serial(id, () => manager.validate(record));
      }
    }
    manager.startQueued();
    return manager;
  }

  private dir(record: Pick<JobRecord, 'tenant' | 'job'>): string {
    return join(this.root, tenantKey(record.tenant), record.job.id);
  }

  private serial<T>(id: string, work: () => Promise<T>): Promise<T> {
    const run = (this.chains.get(id) ?? Promise.resolve()).then(work, work);
    this.chains.set(
      id,
      run.catch(() => {}),
    );
    return run;
  }

  private async save(record: JobRecord): Promise<void> {
    await writeFileAtomic(join(this.dir(record), 'job.json'), JSON.stringify(record));
  }

  private event(record: JobRecord, message: string, extra: Partial<Pick<JobEvent, 'level' | 'data' | 'type'>> = {}): void {
    record.events.push({
      object: 'fine_tuning.job.event',
      id: newId('ftevent-'),
      created_at: now(),
      level: 'info',
      message,
      data: {},
      type: 'message',
      ...extra,
    });
  }

  /** Checks the request, snapshots its files into the job's folder and starts validation. */
  async create(tenant: string, body: CreateJob): Promise<Job> {
    if (body.model !== this.host.baseId)
      throw new ModelNotFoundError(`model "${body.model}" cannot be fine-tuned here; the base model is "${this.host.baseId}"`, {
        param: 'model',
      });
    const requested = body.method?.supervised?.hyperparameters ?? {};
    const hyperparameters = {
      n_epochs: requested.n_epochs ?? 'auto',
      batch_size: requested.batch_size ?? 'auto',
      learning_rate_multiplier: requested.learning_rate_multiplier ?? 'auto',
    } as const;
    const lora = resolveLora(body.lora, this.host.maxRank, this.host.servableModules);
    const training = await this.files.get(tenant, body.training_file, 'training_file');
    const validation = body.validation_file ? await this.files.get(tenant, body.validation_file, 'validation_file') : null;
    for (const [f, param] of [
      [training, 'training_file'],
      [validation, 'validation_file'],
    ] as const) {
      if (f && f.purpose !== 'fine-tune')
        throw new InvalidRequestError(`file "${f.id}" has purpose "${f.purpose}"; upload training data with purpose "fine-tune"`, {
          param,
        });
    }
    const id = newId(FINE_TUNED_PREFIX);
    const record: JobRecord = {
      tenant,
      createdMs: Math.max(Date.now(), this.lastCreated + 1),
      job: {
        object: 'fine_tuning.job',
        id,
        model: body.model,
        created_at: now(),
        finished_at: null,
        fine_tuned_model: null,
        organization_id: tenant,
        result_files: [],
        status: 'validating_files',
        training_file: training.id,
        validation_file: validation?.id ?? null,
        hyperparameters,
        trained_tokens: null,
        error: null,
        seed: body.seed ?? randomInt(2 ** 31),
        estimated_finish: null,
        integrations: null,
        metadata: null,
        user_provided_suffix: body.suffix ?? null,
        method: { type: 'supervised', supervised: { hyperparameters } },
        lora,
      },
      events: [],
      checkpoints: [],
      adapters: {},
      trainLoss: [],
      valLoss: [],
      examples: null,
    };
    const dir = this.dir(record);
    await mkdir(dir, { recursive: true });
    await copyFile(await this.files.path(tenant, training.id, 'training_file'), join(dir, 'train.jsonl'));
    if (validation) await copyFile(await this.files.path(tenant, validation.id, 'validation_file'), join(dir, 'valid.jsonl'));
    this.event(record, `Validating training file: ${training.id}${validation ? ` and validation file: ${validation.id}` : ''}`);
    this.lastCreated = record.createdMs;
    this.records.set(id, record);
    await this.save(record);
    void this.serial(id, () => this.validate(record));
    return record.job;
  }

  private async validate(record: JobRecord): Promise<void> {
    if (record.job.status !== 'validating_files') return;
    const dir = this.dir(record);
    try {
      record.examples = checkTrainingFile(await readFile(join(dir, 'train.jsonl')), this.limits.files);
      if (record.job.validation_file) checkTrainingFile(await readFile(join(dir, 'valid.jsonl')), this.limits.files);
    } catch (err) {
      const e = err as LoraServeError;
      await this.fail(record, e.code ?? 'invalid_training_file', e.message, e.param);
      return;
    }
    const resolved = resolveHyperparameters(record.job.hyperparameters, record.examples);
    record.job.hyperparameters = resolved;
    record.job.method.supervised.hyperparameters = resolved;
    record.job.status = 'queued';
    this.event(record, `Files validated (${record.examples} examples), moving job to queued state`, { data: { ...resolved } });
    await this.save(record);
    this.queue.push(record.job.id);
    this.startQueued();
  }

  private startQueued(): void {
    while (!this.closed && this.workers.size < this.limits.maxJobs && this.queue.length) {
      const id = this.queue.shift()!;
      const record = this.records.get(id)!;
      if (record.job.status === 'queued') this.startWorker(record);
    }
  }

  private startWorker(record: JobRecord): void {
    const dir = this.dir(record);
    const hp = record.job.hyperparameters as Hyperparameters;
    const job: WorkerJob = {
      train: {
        modelDir: this.host.modelDir,
        dataPath: join(dir, 'train.jsonl'),
        valDataPath: record.job.validation_file ? join(dir, 'valid.jsonl') : undefined,
        outDir: join(dir, 'work', 'final'),
        r: record.job.lora.r,
        alpha: record.job.lora.lora_alpha,
        dropout: record.job.lora.lora_dropout,
        targetModules: record.job.lora.target_modules,
        epochs: hp.n_epochs,
        batchSize: hp.batch_size,
        learningRate: BASE_LEARNING_RATE * hp.learning_rate_multiplier,
        seed: record.job.seed,
        maxSeq: this.host.maxSeq,
        threads: this.limits.threads,
      },
      checkpointsDir: join(dir, 'work', 'checkpoints'),
      firstCheckpointEpoch: hp.n_epochs - CHECKPOINTS,
    };
    const threads = String(this.limits.threads);
    const child = fork(WORKER, [], {
      execArgv: WORKER.endsWith('.ts') ? [`--import=${import.meta.resolve('tsx')}`] : [],
      // The native TensorFlow backends (when installed) read their pool sizes from these.
      env: { ...process.env, TF_NUM_INTRAOP_THREADS: threads, TF_NUM_INTEROP_THREADS: '1', OMP_NUM_THREADS: threads },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => {
      stderr = (stderr + c.toString()).slice(-2000);
    });
    try {
      // The lowest priority: under load the serving process wins every contested core.
      setPriority(child.pid!, 19);
    } catch {
      // Not permitted here (some containers): the thread budget still bounds it.
    }
    const exited = new Promise<void>((resolve) => {
      child.on('exit', (code, signal) => {
        void this.serial(record.job.id, () => this.workerExited(record, code, signal, stderr)).finally(() => {
          this.workers.delete(record.job.id);
          resolve();
          this.startQueued();
        });
      });
    });
    this.workers.set(record.job.id, { child, cancelled: false, exited });
    child.on('message', (m: ToParent) => void this.serial(record.job.id, () => this.onMessage(record, m)));
    child.on('error', () => {}); // 'exit' follows and fails the job
    record.job.status = 'running';
    this.event(record, 'Fine-tuning job started');
    void this.serial(record.job.id, () => this.save(record));
    child.send({ type: 'start', job } satisfies ToWorker);
  }

  private async onMessage(record: JobRecord, m: ToParent): Promise<void> {
    if (record.job.status !== 'running') return;
    if (m.type === 'step') {
      record.trainLoss.push({ step: m.step, epoch: m.epoch, loss: m.loss });
      this.event(record, `Step ${m.step}/${m.total}: training loss=${m.loss.toFixed(4)}`, {
        type: 'metrics',
        data: { step: m.step, total_steps: m.total, epoch: m.epoch, train_loss: m.loss },
      });
      // Step events are saved with the next state change, checkpoint or epoch (not a file write per step).
      return;
    }
    if (m.type === 'epoch') {
      if (m.valLoss !== null) {
        record.valLoss.push({ step: m.step, epoch: m.epoch, loss: m.valLoss });
        this.event(record, `Epoch ${m.epoch}: validation loss=${m.valLoss.toFixed(4)}`, {
          type: 'metrics',
          data: { step: m.step, epoch: m.epoch, valid_loss: m.valLoss },
        });
      }
      if (m.dir) await this.checkpoint(record, m.step, m.dir, m.valLoss);
      await this.save(record);
      return;
    }
    if (m.type === 'failed') {
      if (m.code !== 'cancelled') await this.fail(record, m.code, m.message);
      return;
    }
    await this.finish(record, m);
  }

  private ftName(record: JobRecord): string {
    return `ft:${record.job.model}:${record.job.user_provided_suffix ?? ''}:${record.job.id}`;
  }

  private async checkpoint(record: JobRecord, step: number, dir: string, valLoss: number | null): Promise<void> {
    const name = `${this.ftName(record)}:ckpt-step-${step}`;
    const storeName = `${record.job.id}.step-${step}`;
    try {
      await this.host.publish(storeName, dir);
    } catch (err) {
      this.event(record, `Checkpoint at step ${step} could not be stored: ${(err as Error).message}`, { level: 'warn' });
      return;
    }
    record.adapters[name] = storeName;
    record.checkpoints.unshift({
      object: 'fine_tuning.job.checkpoint',
      id: newId('ftckpt-'),
      created_at: now(),
      fine_tuned_model_checkpoint: name,
      fine_tuning_job_id: record.job.id,
      metrics: { step, train_loss: record.trainLoss.at(-1)?.loss ?? null, valid_loss: valLoss },
      step_number: step,
    });
    this.event(record, `Checkpoint created at step ${step}: ${name}`, { data: { step, fine_tuned_model_checkpoint: name } });
  }

  private async finish(record: JobRecord, done: Extract<ToParent, { type: 'done' }>): Promise<void> {
    const dir = this.dir(record);
    const name = this.ftName(record);
    try {
      await this.host.publish(record.job.id, join(dir, 'work', 'final'));
    } catch (err) {
      await this.fail(record, 'adapter_rejected', `the trained adapter could not be stored: ${(err as Error).message}`);
      return;
    }
    record.adapters[name] = record.job.id;
    const csv = [
      'step,train_loss,valid_loss',
      ...record.trainLoss.map((p) => `${p.step},${p.loss},${record.valLoss.find((v) => v.step === p.step)?.loss ?? ''}`),
    ];
    const metrics = await this.files.put(record.tenant, 'step_metrics.csv', 'fine-tune-results', `${csv.join('\n')}\n`);
    const plot = await this.files.put(
      record.tenant,
      'loss-plot.svg',
      'fine-tune-results',
      await readFile(join(dir, 'work', 'final', 'loss-plot.svg')),
    );
    const log = await this.files.put(
      record.tenant,
      'train-log.json',
      'fine-tune-results',
      await readFile(join(dir, 'work', 'final', 'train-log.json')),
    );
    record.job.result_files = [metrics.id, plot.id, log.id];
    record.job.fine_tuned_model = name;
    record.job.status = 'succeeded';
    record.job.finished_at = now();
    this.event(record, `New fine-tuned model created: ${name}`, {
      data: { steps: done.steps, seconds: done.seconds, backend: done.backend },
    });
    this.event(record, 'The job has successfully completed');
    await this.save(record);
    await rm(join(dir, 'work'), { recursive: true, force: true });
  }

  private async fail(record: JobRecord, code: string, message: string, param: string | null = null): Promise<void> {
    if (TERMINAL.has(record.job.status)) return;
    record.job.status = 'failed';
    record.job.error = { code, message, param };
    record.job.finished_at = now();
    this.event(record, `Job failed: ${message}`, { level: 'error' });
    await this.save(record);
    await rm(join(this.dir(record), 'work'), { recursive: true, force: true });
  }

  private async workerExited(record: JobRecord, code: number | null, signal: string | null, stderr: string): Promise<void> {
    const worker = this.workers.get(record.job.id);
    if (worker?.cancelled && !TERMINAL.has(record.job.status)) {
      record.job.status = 'cancelled';
      record.job.finished_at = now();
      this.event(record, 'Job cancelled');
      await this.save(record);
      await rm(join(this.dir(record), 'work'), { recursive: true, force: true });
      return;
    }
    const how = signal ? `was killed (${signal})` : `exited with code ${code}`;
    const tail = stderr.trim().split('\n').at(-1);
    await this.fail(record, 'worker_died', `the training worker ${how} before the job finished${tail ? `: ${tail}` : ''}`);
  }

  private require(tenant: string, id: string): JobRecord {
    const record = this.records.get(id);
    if (!record || record.tenant !== tenant)
      throw new FineTuningJobNotFoundError(`no fine-tuning job with id "${id}"`, { param: 'fine_tuning_job_id' });
    return record;
  }

  get(tenant: string, id: string): Job {
    return this.require(tenant, id).job;
  }

  list(tenant: string, after: string | undefined, limit: number): Page<Job> {
    const jobs = [...this.records.values()]
      .filter((r) => r.tenant === tenant)
      .sort((a, b) => b.createdMs - a.createdMs)
      .map((r) => r.job);
    return page(jobs, after, limit);
  }

  events(tenant: string, id: string, after: string | undefined, limit: number): Page<JobEvent> {
    return page([...this.require(tenant, id).events].reverse(), after, limit);
  }

  checkpoints(tenant: string, id: string, after: string | undefined, limit: number): Page<Checkpoint> {
    return page(this.require(tenant, id).checkpoints, after, limit);
  }

  /**
   * Cancels a job. A running one stops at its next step boundary (its worker is killed if it has
   * not within CANCEL_GRACE_MS); the answer comes once it has.
   */
  async cancel(tenant: string, id: string): Promise<Job> {
    const record = this.require(tenant, id);
    if (TERMINAL.has(record.job.status))
      throw new JobNotCancellableError(`job "${id}" has already ${record.job.status}`, { param: 'fine_tuning_job_id' });
    const worker = this.workers.get(id);
    if (worker) {
      worker.cancelled = true;
      if (worker.child.connected) worker.child.send({ type: 'cancel' } satisfies ToWorker);
      const kill = setTimeout(() => worker.child.kill('SIGKILL'), CANCEL_GRACE_MS);
      await worker.exited;
      clearTimeout(kill);
      return record.job;
    }
    await this.serial(id, async () => {
      if (TERMINAL.has(record.job.status)) return;
      const at = this.queue.indexOf(id);
      if (at >= 0) this.queue.splice(at, 1);
      record.job.status = 'cancelled';
      record.job.finished_at = now();
      this.event(record, 'Job cancelled');
      await this.save(record);
    });
    return record.job;
  }

  /** The adapter store name behind a fine-tuned model or checkpoint id, if this tenant owns it. */
  adapterFor(tenant: string, model: string): string | undefined {
    const id = /^ft:.*:(ftjob-[0-9a-f]{24})(?::ckpt-step-\d+)?$/.exec(model)?.[1];
    const record = id === undefined ? undefined : this.records.get(id);
    return record?.tenant === tenant ? record.adapters[model] : undefined;
  }

  /**
   * Deletes a fine-tuned model or checkpoint of this tenant (OpenAI's models.delete): its adapter
   * leaves the store; the job keeps its record.
   */
  async deleteModel(tenant: string, model: string): Promise<void> {
    const name = this.adapterFor(tenant, model);
    if (name === undefined) throw new ModelNotFoundError(`no fine-tuned model "${model}"`, { param: 'model' });
    const record = this.records.get(/:(ftjob-[0-9a-f]{24})/.exec(model)![1]!)!;
    await this.serial(record.job.id, async () => {
      await this.host.unpublish(name);
      delete record.adapters[model];
      this.event(record, `Model deleted: ${model}`);
      await this.save(record);
    });
  }

  /** The tenant's fine-tuned models and checkpoints (for /v1/models). */
  models(tenant: string): Array<{ id: string; created: number }> {
    return [...this.records.values()]
      .filter((r) => r.tenant === tenant)
      .flatMap((r) => Object.keys(r.adapters).map((id) => ({ id, created: r.job.finished_at ?? r.job.created_at })));
  }

  /** The worker's process id of a running job (fault tests, operators). */
  workerPid(id: string): number | undefined {
    return this.workers.get(id)?.child.pid;
  }

  /** Stops every worker; their jobs fail with `server_stopped` (queued jobs stay queued for the next start). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      [...this.workers.entries()].map(async ([id, w]) => {
        const record = this.records.get(id)!;
        await this.serial(id, () => this.fail(record, 'server_stopped', STOPPED));
        w.child.kill('SIGKILL');
        await w.exited;
      }),
    );
    await Promise.all([...this.chains.values()]);
  }
}

const STOPPED = 'the server stopped while this job was running; jobs are not resumed: create a new job to train again';
