/**
 * npm run bench:finetune [-- --epochs N --batch N --lr-multiplier X --concurrency N --max-tokens N --rounds N]
 * The README's fine-tuning example on the demo model (src/bench/finetune.ts): job time, and serving ITL with and without the job.
 */
import { parseArgs } from 'node:util';
import { benchFineTune } from '../src/bench/index.js';

const { values } = parseArgs({
  options: {
    epochs: { type: 'string', default: '20' },
    batch: { type: 'string', default: '4' },
    'lr-multiplier': { type: 'string', default: '25' },
    concurrency: { type: 'string', default: '4' },
    'max-tokens': { type: 'string', default: '48' },
    rounds: { type: 'string', default: '5' },
  },
});
const result = await benchFineTune({
  modelDir: 'models/loraserve-demo',
  dataPath: 'data/finetune-example.jsonl',
  concurrency: Number(values.concurrency),
  maxTokens: Number(values['max-tokens']),
  hyperparameters: {
    n_epochs: Number(values.epochs),
    batch_size: Number(values.batch),
    learning_rate_multiplier: Number(values['lr-multiplier']),
  },
  lora: { target_modules: ['q_proj', 'v_proj', 'gate_proj', 'up_proj', 'down_proj'] },
  question: 'What is the office Wi-Fi password?',
  rounds: Number(values.rounds),
});
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
