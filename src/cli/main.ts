#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { runCommand } from './fatal.js';
import { numberFlag } from './flags.js';

const USAGE = `loraserve <command> [options]

commands:
  serve    serve the OpenAI-compatible API (see loraserve serve --help)
  train    LoRA (or --full) fine-tuning with TensorFlow.js (see loraserve train --help)
  merge    fold an adapter into its base: --model DIR --adapter DIR --out DIR
           a weighted mix: --adapter DIR1 --weight 0.7 --adapter DIR2 --weight 0.3
  bench    heterogeneous multi-LoRA batching vs serial adapter switching vs no LoRA, engine limits (JSON;
           the summary object is printed last)
           --quick   small run (GPT-2-small shape only), about a minute on 2 cores
           --shape gpt2-small|qwen2-0.5b   one shape's section only
           --quantize int8|int4   base weights of the GPT-2-small section (the Qwen2.5-0.5B one runs all)
           --provider cpu|webgpu|cuda   every engine's execution provider (on Mesa's lavapipe the
                     timings are labelled meaningless: it is Vulkan on the CPU)
           --threads N`;

// Each command imports what it needs when it runs: serving never loads TensorFlow.js or the
// benchmark's peer, and a bad flag is reported before any model library loads.
async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return (await import('./serve.js')).serve(rest);
    case 'train':
      return (await import('./train.js')).trainCommand(rest);
    case 'merge': {
      const { values } = parseArgs({
        args: rest,
        options: {
          model: { type: 'string' },
          adapter: { type: 'string', multiple: true },
          weight: { type: 'string', multiple: true },
          out: { type: 'string' },
        },
      });
      const dirs = values.adapter ?? [];
      const weights = values.weight ?? [];
      if (!values.model || !dirs.length || !values.out || (weights.length && weights.length !== dirs.length)) {
        process.stderr.write('usage: loraserve merge --model DIR --adapter DIR [--weight W] [--adapter DIR --weight W ...] --out DIR\n');
        process.exitCode = 2;
        return;
      }
      const { mergeAdapter } = await import('../lora/index.js');
      const r = await mergeAdapter(
        values.model,
        dirs.map((dir, i) => ({ dir, weight: weights.length ? Number(weights[i]) : 1 })),
        values.out,
      );
      process.stdout.write(`${JSON.stringify({ out: values.out, merged_modules: r.mergedModules })}\n`);
      return;
    }
    case 'bench': {
      const { values } = parseArgs({
        args: rest,
        options: {
          quick: { type: 'boolean', default: false },
          threads: { type: 'string' },
          shape: { type: 'string' },
          quantize: { type: 'string' },
          provider: { type: 'string', default: 'cpu' },
        },
      });
      const { runBench, SHAPES } = await import('../bench/index.js');
      const { QUANTIZE_MODES } = await import('../model/index.js');
      const { EXECUTION_PROVIDERS } = await import('../engine/index.js');
      const provider = EXECUTION_PROVIDERS.find((p) => p === values.provider);
      if (values.shape !== undefined && !(values.shape in SHAPES)) {
        process.stderr.write(`--shape must be one of ${Object.keys(SHAPES).join(', ')}\n`);
        process.exitCode = 2;
        return;
      }
      const quantize = QUANTIZE_MODES.find((m) => m === values.quantize);
      if (values.quantize !== undefined && !quantize) {
        process.stderr.write(`--quantize must be one of ${QUANTIZE_MODES.join(', ')}\n`);
        process.exitCode = 2;
        return;
      }
      if (!provider) {
        process.stderr.write(`--provider must be one of ${EXECUTION_PROVIDERS.join(', ')}\n`);
        process.exitCode = 2;
        return;
      }
      const result = await runBench({
        provider,
        quick: values.quick ?? false,
        threads: values.threads ? numberFlag(values.threads, 'threads') : undefined,
        shape: values.shape as keyof typeof SHAPES | undefined,
        quantize,
      });
      process.stdout.write(`${JSON.stringify(result.details, null, 2)}\n${JSON.stringify(result.summary)}\n`);
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
