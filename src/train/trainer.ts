/**
 * `loraserve train`: LoRA (or, with `full`, whole-model) fine-tuning in TensorFlow.js. Base weights
 * stay frozen in LoRA mode; A and B train on the configured target modules. AdamW with warm-up
 * and cosine or linear decay, gradient accumulation, a seeded shuffle, a held-out validation
 * split. Writes a PEFT adapter exactly as PEFT saves one (or a full HF model folder), plus
 * train-log.json and loss-plot.svg.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { ConfigError, DatasetError } from '../errors.js';
import { Tokenizer } from '../tokenizer/index.js';
import { copyModelSideFiles, loadHfModel, writeSafetensors, type HfModel, type TensorToWrite } from '../model/index.js';
import { peftConfig, resolveTargets, parsePeftConfig, writePeftAdapter } from '../lora/index.js';
import { rng } from '../util/rng.js';
import { Progress } from '../util/progress.js';
import { initTf, tf } from './tf-backend.js';
import { TfCausalLM } from './tf-model.js';
import { loadDataset, type Example } from './dataset.js';
import { lossPlotSvg } from './loss-plot.js';

export interface TrainOptions {
  modelDir: string;
  dataPath: string;
  outDir: string;
  full: boolean;
  r: number;
  alpha: number;
  dropout: number;
  targetModules: string[] | 'all-linear';
  useRslora: boolean;
  epochs: number;
  learningRate: number;
  batchSize: number;
  gradAccum: number;
  weightDecay: number;
  warmupRatio: number;
  schedule: 'cosine' | 'linear' | 'constant';
  valSplit: number;
  /** A separate validation file; when set, every line of dataPath trains and valSplit is unused. */
  valDataPath?: string;
  /**
   * General data replayed alongside the task data so that an adapter keeps the base model's
   * behaviour outside its task: each epoch draws a fresh sample of it making up `replayShare` of
   * the epoch's examples. Only the training data is mixed; validation stays the task's.
   */
  replayDataPath?: string;
  /** Share of each epoch drawn from replayDataPath, in [0, 1). */
  replayShare?: number;
  /** Clip the global gradient norm to this before each update (0 or unset: no clipping). */
  maxGradNorm?: number;
  maxSeq: number;
  seed: number;
  /** Called after each optimizer step (tests, progress, a fine-tuning job's events). */
  onStep?: (s: { step: number; total: number; epoch: number; loss: number }) => void;
  /**
   * Called at the end of each epoch with its validation loss (null without validation data) and a
   * function that writes the LoRA adapter as it stands into a folder (a checkpoint).
   */
  onEpoch?: (e: { epoch: number; step: number; valLoss: number | null; saveAdapter: (dir: string) => Promise<void> }) => Promise<void>;
  /** Threads of the WebAssembly backend (its default: every core). */
  threads?: number;
  /** Stops training between two optimizer steps: train() rejects with the signal's reason and writes nothing. */
  signal?: AbortSignal;
  quiet?: boolean;
}

export const TRAIN_DEFAULTS: Omit<TrainOptions, 'modelDir' | 'dataPath' | 'outDir'> = {
  full: false,
  r: 8,
  alpha: 16,
  dropout: 0.05,
  targetModules: ['q_proj', 'v_proj'],
  useRslora: false,
  epochs: 3,
  learningRate: 2e-4,
  batchSize: 8,
  gradAccum: 1,
  weightDecay: 0,
  warmupRatio: 0.03,
  schedule: 'cosine',
  valSplit: 0.1,
  maxSeq: 256,
  seed: 42,
};

export interface TrainResult {
  backend: string;
  steps: number;
  trainLoss: Array<{ step: number; epoch: number; loss: number; lr: number; tokensPerSecond: number }>;
  valLoss: Array<{ step: number; epoch: number; loss: number }>;
  /** Dataset lines held out for validation (never trained on). */
  heldOutLines: number[];
  seconds: number;
}

function learningRate(o: TrainOptions, step: number, total: number): number {
  const warmup = Math.max(1, Math.round(o.warmupRatio * total));
  if (step < warmup) return (o.learningRate * (step + 1)) / warmup;
  const progress = (step - warmup) / Math.max(1, total - warmup);
  if (o.schedule === 'constant') return o.learningRate;
  if (o.schedule === 'linear') return o.learningRate * (1 - progress);
  return o.learningRate * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/** Mean next-token cross-entropy over the masked (assistant) positions of a padded batch. */
function batchLoss(lm: TfCausalLM, batch: Example[], pad: number, dropout: number): tf.Scalar {
  const T = Math.max(...batch.map((e) => e.tokens.length));
  const ids = new Int32Array(batch.length * T).fill(pad);
  const targets = new Int32Array(batch.length * (T - 1));
  const weights = new Float32Array(batch.length * (T - 1));
  batch.forEach((e, b) => {
    ids.set(e.tokens, b * T);
    for (let t = 0; t + 1 < e.tokens.length; t++) {
      targets[b * (T - 1) + t] = e.tokens[t + 1]!;
      weights[b * (T - 1) + t] = e.lossMask[t + 1]!;
    }
  });
  return tf.tidy(() => {
    const logits = lm.forward(tf.tensor2d(ids, [batch.length, T], 'int32'), dropout);
    const V = logits.shape[2];
    const shifted = tf.reshape(tf.slice(logits, [0, 0, 0], [-1, T - 1, -1]), [-1, V]);
    const logp = tf.logSoftmax(shifted);
    const picked = tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(targets, 'int32'), V)), -1);
    const w = tf.tensor1d(weights);
    return tf.div(tf.neg(tf.sum(tf.mul(picked, w))), tf.maximum(tf.sum(w), 1)) as tf.Scalar;
  });
}

export async function train(o: TrainOptions): Promise<TrainResult> {
  const { backend } = await initTf(o.threads);
  const model = loadHfModel(o.modelDir);
  let lm: TfCausalLM | undefined;
  let optimizer: tf.Optimizer | undefined;
  try {
    const tokenizer = await Tokenizer.load(model.dir);
    const shuffle = shuffler(o.seed);
    const data = splitData(o, tokenizer, shuffle);
    lm = new TfCausalLM(model, o.full ? 'full' : 'lora', loraSetup(o, model), o.seed);
    optimizer = tf.train.adam(o.learningRate, 0.9, 0.999, 1e-8);
    const variables = lm.trainableVariables();
    const stepper: Stepper = {
      lm,
      optimizer,
      variables,
      decayed: variables.filter((v) => v.shape.length >= 2),
      pad: model.generation.padTokenId ?? model.generation.eosTokenIds[0] ?? 0,
    };
    const result = await runEpochs(o, data, stepper, backend, model);
    await writeOutput(lm, model, o, result);
    return result;
  } finally {
    lm?.dispose();
    optimizer?.dispose();
    model.weights.close();
  }
}

/** A seeded shuffle; every call draws from the same stream, so a run repeats with its seed. */
function shuffler(seed: number): <T>(items: T[]) => T[] {
  const r = rng(seed);
  return (items) =>
    items
      .map((e) => ({ e, k: r.next() }))
      .sort((a, b) => a.k - b.k)
      .map((x) => x.e);
}

interface TrainingData {
  train: Example[];
  /** Never trained on: held out of dataPath, or all of valDataPath. */
  val: Example[];
  /** Replay examples mixed into each epoch. */
  replayCount: number;
  /** One epoch's examples: the training set and a fresh replay sample, shuffled. */
  epoch(): Example[];
}

/** The dataset split into training and validation, and the replay data drawn for each epoch. */
function splitData(o: TrainOptions, tokenizer: Tokenizer, shuffle: <T>(items: T[]) => T[]): TrainingData {
  const examples = loadDataset(o.dataPath, tokenizer, o.maxSeq);
  const order = shuffle(examples);
  const valCount = o.valDataPath || examples.length < 10 || o.valSplit <= 0 ? 0 : Math.max(1, Math.round(examples.length * o.valSplit));
  const val = o.valDataPath ? loadDataset(o.valDataPath, tokenizer, o.maxSeq) : order.slice(0, valCount);
  const train = order.slice(valCount);
  if (train.length === 0) throw new DatasetError(`${o.dataPath}: no examples left for training after the validation split`);
  const replayShare = o.replayDataPath ? (o.replayShare ?? 0) : 0;
  if (!(replayShare >= 0 && replayShare < 1)) throw new ConfigError(`replayShare must be in [0, 1), got ${o.replayShare}`);
  const replayPool = o.replayDataPath && replayShare > 0 ? loadDataset(o.replayDataPath, tokenizer, o.maxSeq) : [];
  const replayCount = Math.round((train.length * replayShare) / (1 - replayShare));
  // A fresh draw each epoch, cycling through the whole pool before repeating an example.
  let replayQueue: Example[] = [];
  const replaySample = (): Example[] => {
    const out: Example[] = [];
    while (out.length < replayCount) {
      if (!replayQueue.length) replayQueue = shuffle(replayPool);
      out.push(replayQueue.pop()!);
    }
    return out;
  };
  return { train, val, replayCount, epoch: () => shuffle([...train, ...replaySample()]) };
}

/** The LoRA layers to train (null when training the full model); targets that match nothing are a ConfigError. */
function loraSetup(o: TrainOptions, model: HfModel): ConstructorParameters<typeof TfCausalLM>[2] {
  if (o.full) return null;
  const peft = parsePeftConfig(
    JSON.stringify(peftConfig({ r: o.r, lora_alpha: o.alpha, target_modules: o.targetModules, use_rslora: o.useRslora })),
  );
  const modules = resolveTargets(peft, model).map((t) => t.module);
  if (modules.length === 0) throw new ConfigError(`target modules ${JSON.stringify(o.targetModules)} match no linear layer of ${model.id}`);
  return { r: o.r, alpha: o.alpha, dropout: o.dropout, useRslora: o.useRslora, modules };
}

/** What an optimizer step works on. */
interface Stepper {
  lm: TfCausalLM;
  optimizer: tf.Optimizer;
  variables: tf.Variable[];
  /** The matrices AdamW's weight decay applies to (not norms or biases). */
  decayed: tf.Variable[];
  pad: number;
}

/**
 * Every epoch's optimizer steps, with the validation loss before the first epoch and after each.
 * It yields to the event loop between steps, so an abort (a fine-tuning job's cancel, its IPC
 * channel closing) is seen within one step.
 */
async function runEpochs(o: TrainOptions, data: TrainingData, stepper: Stepper, backend: string, model: HfModel): Promise<TrainResult> {
  const stepsPerEpoch = Math.ceil((data.train.length + data.replayCount) / (o.batchSize * o.gradAccum));
  const total = stepsPerEpoch * o.epochs;
  const progress = o.quiet ? null : new Progress(`train (${backend})`, total);
  const result: TrainResult = {
    backend,
    steps: total,
    trainLoss: [],
    valLoss: [],
    heldOutLines: o.valDataPath ? [] : data.val.map((e) => e.line).sort((a, b) => a - b),
    seconds: 0,
  };
  const started = performance.now();
  let step = 0;
  const evaluate = (epoch: number) => {
    if (!data.val.length) return null;
    const loss = validationLoss(stepper, data.val, o.batchSize);
    result.valLoss.push({ step, epoch, loss });
    return loss;
  };
  evaluate(0);
  for (let epoch = 1; epoch <= o.epochs; epoch++) {
    const shuffled = data.epoch();
    for (let s = 0; s < stepsPerEpoch; s++) {
      await new Promise(setImmediate);
      o.signal?.throwIfAborted();
      const stepStart = performance.now();
      const lr = learningRate(o, step, total);
      const micro: Example[][] = [];
      for (let a = 0; a < o.gradAccum; a++) {
        const from = (s * o.gradAccum + a) * o.batchSize;
        const batch = shuffled.slice(from, from + o.batchSize);
        if (!batch.length) break;
        micro.push(batch);
      }
      if (!micro.length) continue;
      const { loss, tokens } = optimizerStep(stepper, micro, lr, o);
      step++;
      const tokensPerSecond = tokens / ((performance.now() - stepStart) / 1000);
      result.trainLoss.push({ step, epoch, loss, lr, tokensPerSecond });
      o.onStep?.({ step, total, epoch, loss });
      progress?.update(step, `epoch ${epoch}/${o.epochs} loss ${loss.toFixed(4)} ${tokensPerSecond.toFixed(0)} tok/s`);
    }
    const valLoss = evaluate(epoch);
    if (o.onEpoch && !o.full) {
      const saveAdapter = (dir: string) => writeLoraAdapter(stepper.lm, model, o, dir);
      await o.onEpoch({ epoch, step, valLoss, saveAdapter });
    }
  }
  result.seconds = (performance.now() - started) / 1000;
  return result;
}

/** Mean loss over the validation set, without dropout. */
function validationLoss({ lm, pad }: Stepper, val: Example[], batchSize: number): number {
  let sum = 0;
  for (let i = 0; i < val.length; i += batchSize) {
    const l = batchLoss(lm, val.slice(i, i + batchSize), pad, 0);
    sum += l.dataSync()[0]! * Math.min(batchSize, val.length - i);
    l.dispose();
  }
  return sum / val.length;
}

/**
 * One update from the gradients of `micro` batches averaged (clipped to maxGradNorm), then AdamW's
 * decoupled weight decay. Returns the batches' mean loss and their token count.
 */
function optimizerStep(t: Stepper, micro: Example[][], lr: number, o: TrainOptions): { loss: number; tokens: number } {
  let tokens = 0;
  let lossSum = 0;
  let accumulated: Record<string, tf.Tensor> | null = null;
  for (const batch of micro) {
    tokens += batch.reduce((n, e) => n + e.tokens.length, 0);
    const { value, grads } = tf.variableGrads(() => batchLoss(t.lm, batch, t.pad, o.dropout), t.variables);
    lossSum += value.dataSync()[0]!;
    value.dispose();
    if (!accumulated) accumulated = grads;
    else {
      for (const k of Object.keys(grads)) {
        const sum = tf.add(accumulated[k]!, grads[k]!);
        accumulated[k]!.dispose();
        grads[k]!.dispose();
        accumulated[k] = sum;
      }
    }
  }
  const averaged = clipped(
    tf.tidy(() => Object.fromEntries(Object.entries(accumulated!).map(([k, g]) => [k, tf.div(g, micro.length)]))),
    o.maxGradNorm,
  );
  for (const g of Object.values(accumulated!)) g.dispose();
  (t.optimizer as unknown as { learningRate: number }).learningRate = lr;
  t.optimizer.applyGradients(averaged as unknown as Parameters<typeof t.optimizer.applyGradients>[0]);
  for (const g of Object.values(averaged)) g.dispose();
  if (o.weightDecay > 0) for (const v of t.decayed) tf.tidy(() => v.assign(tf.mul(v, 1 - lr * o.weightDecay)));
  return { loss: lossSum / micro.length, tokens };
}

/** Gradients scaled down to a global norm of `maxNorm` when over it (the ones passed in are then disposed). */
function clipped(grads: Record<string, tf.Tensor>, maxNorm: number | undefined): Record<string, tf.Tensor> {
  if (!maxNorm) return grads;
  const norm = tf.tidy(() => Math.sqrt(tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g)))).dataSync()[0]!));
  // A loss spike early on (an adapter starting far from its answers) would otherwise throw the weights off.
  if (!(norm > maxNorm)) return grads;
  const scaled = tf.tidy(() => Object.fromEntries(Object.entries(grads).map(([k, g]) => [k, tf.mul(g, maxNorm / norm)])));
  for (const g of Object.values(grads)) g.dispose();
  return scaled;
}

/** The LoRA layers as they stand, written as a PEFT adapter folder. */
async function writeLoraAdapter(lm: TfCausalLM, model: HfModel, o: TrainOptions, dir: string): Promise<void> {
  const modules = new Map();
  for (const [name, l] of lm.exportLora()) {
    modules.set(name, { A: l.A, B: l.B, rank: o.r, inFeatures: l.module.inFeatures, outFeatures: l.module.outFeatures });
  }
  const config = peftConfig({
    base_model_name_or_path: basename(model.dir),
    r: o.r,
    lora_alpha: o.alpha,
    lora_dropout: o.dropout,
    target_modules: o.targetModules,
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: o.useRslora,
  });
  await writePeftAdapter(dir, { config, modules });
}

async function writeOutput(lm: TfCausalLM, model: HfModel, o: TrainOptions, result: TrainResult): Promise<void> {
  mkdirSync(o.outDir, { recursive: true });
  if (o.full) {
    const tensors: Record<string, TensorToWrite> = {};
    for (const [name, w] of lm.exportWeights()) tensors[name] = { dtype: 'F32', shape: w.shape, data: w.data };
    await writeSafetensors(join(o.outDir, 'model.safetensors'), tensors, { format: 'pt' });
    copyModelSideFiles(model.dir, o.outDir);
  } else await writeLoraAdapter(lm, model, o, o.outDir);
  const { onStep: _onStep, onEpoch: _onEpoch, signal: _signal, ...options } = o;
  // Paths relative to the working folder (the repository for the demo scripts): a log is committed
  // and read on other machines, where this machine's absolute paths mean nothing.
  const here = (path: string | undefined) => (path === undefined ? path : relative(process.cwd(), resolve(path)) || '.');
  const settings = {
    ...options,
    modelDir: here(o.modelDir),
    dataPath: here(o.dataPath),
    outDir: here(o.outDir),
    valDataPath: here(o.valDataPath),
    replayDataPath: here(o.replayDataPath),
  };
  writeFileSync(join(o.outDir, 'train-log.json'), `${JSON.stringify({ settings, ...result }, null, 2)}\n`);
  writeFileSync(
    join(o.outDir, 'loss-plot.svg'),
    lossPlotSvg(result.trainLoss, result.valLoss, `${basename(o.outDir)}: loss (${result.backend})`),
  );
}
