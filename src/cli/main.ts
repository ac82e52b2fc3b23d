#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { runCommand } from './fatal.js';

const USAGE = `loraserve <command> [options]

commands:
  serve    serve the OpenAI-compatible API (see loraserve serve --help)
  train    LoRA (or --full) fine-tuning with TensorFlow.js (see loraserve train --help)
  merge    fold an adapter into its base: --model DIR --adapter DIR --out DIR
  bench    heterogeneous multi-LoRA batching vs serial adapter switching vs no LoRA (JSON)
           --quick   small run, under a minute on 2 cores
           --threads N`;

// Each command imports what it needs when it runs: serving never loads TensorFlow.js, and a bad
// flag is reported before any model library loads.
async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return (await import('./serve.js')).serve(rest);
    case 'train':
      return (await import('./train.js')).trainCommand(rest);
    case 'merge': {
      const { values } = parseArgs({ args: rest, options: { model: { type: 'string' }, adapter: { type: 'string' }, out: { type: 'string' } } });
      if (!values.model || !values.adapter || !values.out) {
        process.stderr.write('usage: loraserve merge --model DIR --adapter DIR --out DIR\n');
        process.exitCode = 2;
        return;
      }
      const { mergeAdapter } = await import('../lora/index.js');
      const r = await mergeAdapter(values.model, values.adapter, values.out);
      process.stdout.write(`${JSON.stringify({ out: values.out, merged_modules: r.mergedModules })}\n`);
      return;
    }
    case 'bench': {
      const { values } = parseArgs({ args: rest, options: { quick: { type: 'boolean', default: false }, threads: { type: 'string' } } });
      const { runBench } = await import('./bench.js');
      const result = await runBench({ quick: values.quick ?? false, threads: values.threads ? Number(values.threads) : undefined });
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return;
    }
    case undefined:
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return;
    default:
      process.stderr.write(`unknown command "${command}"\n\n${USAGE}\n`);
      process.exitCode = 2;
  }
}

await runCommand(() => main(process.argv.slice(2)));
