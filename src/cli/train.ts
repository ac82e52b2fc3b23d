import { parseArgs } from 'node:util';
import { ConfigError } from '../errors.js';
import { train, TRAIN_DEFAULTS, type TrainOptions } from '../train/index.js';
import { numberFlag } from './flags.js';

const SCHEDULES: ReadonlyArray<TrainOptions['schedule']> = ['cosine', 'linear', 'constant'];

export const TRAIN_USAGE = `loraserve train --model DIR --data FILE.jsonl --out DIR [options]

  --full                 train every weight (writes a model folder) instead of a LoRA adapter
  --r N --alpha N        LoRA rank and alpha (${TRAIN_DEFAULTS.r}, ${TRAIN_DEFAULTS.alpha})
  --dropout P            lora_dropout (${TRAIN_DEFAULTS.dropout})
  --target a,b|all-linear  target modules (q_proj,v_proj)
  --rslora               scale by alpha/sqrt(r)
  --epochs N --lr X --batch N --grad-accum N --weight-decay X
  --warmup RATIO --schedule cosine|linear|constant
  --val-split RATIO | --val-data FILE.jsonl   held-out fraction, or a separate validation file
  --max-seq N --seed N`;

export async function trainCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      data: { type: 'string' },
      out: { type: 'string' },
      full: { type: 'boolean' },
      r: { type: 'string' },
      alpha: { type: 'string' },
      dropout: { type: 'string' },
      target: { type: 'string' },
      rslora: { type: 'boolean' },
      epochs: { type: 'string' },
      lr: { type: 'string' },
      batch: { type: 'string' },
      'grad-accum': { type: 'string' },
      'weight-decay': { type: 'string' },
      warmup: { type: 'string' },
      schedule: { type: 'string' },
      'val-split': { type: 'string' },
      'val-data': { type: 'string' },
      'max-seq': { type: 'string' },
      seed: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help || !values.model || !values.data || !values.out) {
    process.stdout.write(`${TRAIN_USAGE}\n`);
    if (!values.help) process.exitCode = 2;
    return;
  }
  const num = (flag: keyof typeof values, fallback: number) => {
    const raw = values[flag];
    return typeof raw === 'string' ? numberFlag(raw, flag) : fallback;
  };
  const schedule = (values.schedule ?? TRAIN_DEFAULTS.schedule) as TrainOptions['schedule'];
  if (!SCHEDULES.includes(schedule)) {
    throw new ConfigError(`--schedule must be ${SCHEDULES.join(', ')}, not "${schedule}"`, { param: 'schedule' });
  }
  const options: TrainOptions = {
    ...TRAIN_DEFAULTS,
    modelDir: values.model,
    dataPath: values.data,
    outDir: values.out,
    full: values.full ?? false,
    r: num('r', TRAIN_DEFAULTS.r),
    alpha: num('alpha', TRAIN_DEFAULTS.alpha),
    dropout: num('dropout', TRAIN_DEFAULTS.dropout),
    targetModules:
      values.target === undefined ? TRAIN_DEFAULTS.targetModules : values.target === 'all-linear' ? 'all-linear' : values.target.split(','),
    useRslora: values.rslora ?? false,
    epochs: num('epochs', TRAIN_DEFAULTS.epochs),
    learningRate: num('lr', TRAIN_DEFAULTS.learningRate),
    batchSize: num('batch', TRAIN_DEFAULTS.batchSize),
    gradAccum: num('grad-accum', TRAIN_DEFAULTS.gradAccum),
    weightDecay: num('weight-decay', TRAIN_DEFAULTS.weightDecay),
    warmupRatio: num('warmup', TRAIN_DEFAULTS.warmupRatio),
    schedule,
    valSplit: num('val-split', TRAIN_DEFAULTS.valSplit),
    valDataPath: values['val-data'],
    maxSeq: num('max-seq', TRAIN_DEFAULTS.maxSeq),
    seed: num('seed', TRAIN_DEFAULTS.seed),
  };
  const result = await train(options);
  const last = result.trainLoss.at(-1);
  process.stdout.write(
    `${JSON.stringify({ out: options.outDir, backend: result.backend, steps: result.steps, final_train_loss: last?.loss, final_val_loss: result.valLoss.at(-1)?.loss, seconds: +result.seconds.toFixed(1) })}\n`,
  );
}
