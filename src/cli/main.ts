#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { runBench, SHAPES, type ShapeName } from '../bench/index.js';
import { numberFlag } from './flags.js';
import { serve } from './serve.js';
import { trainCommand } from './train.js';
import { LoraServeError } from '../errors.js';
import { mergeAdapter } from '../lora/index.js';
import { QUANTIZE_MODES, type QuantizeMode } from '../model/index.js';

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
           --threads N`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'train':
      return trainCommand(rest);
    case 'merge': {
      const { values } = parseArgs({
        args: rest,
        options: { model: { type: 'string' }, adapter: { type: 'string', multiple: true }, weight: { type: 'string', multiple: true }, out: { type: 'string' } },
      });
      const dirs = values.adapter ?? [];
      const weights = values.weight ?? [];
      if (!values.model || !dirs.length || !values.out || (weights.length && weights.length !== dirs.length)) {
        process.stderr.write('usage: loraserve merge --model DIR --adapter DIR [--weight W] [--adapter DIR --weight W ...] --out DIR\n');
        process.exitCode = 2;
        return;
      }
      const r = await mergeAdapter(values.model, dirs.map((dir, i) => ({ dir, weight: weights.length ? Number(weights[i]) : 1 })), values.out);
      process.stdout.write(`${JSON.stringify({ out: values.out, merged_modules: r.mergedModules })}\n`);
      return;
    }
    case 'bench': {
      const { values } = parseArgs({ args: rest, options: { quick: { type: 'boolean', default: false }, threads: { type: 'string' }, shape: { type: 'string' }, quantize: { type: 'string' } } });
      if (values.shape !== undefined && !(values.shape in SHAPES)) {
        process.stderr.write(`--shape must be one of ${Object.keys(SHAPES).join(', ')}\n`);
        process.exitCode = 2;
        return;
      }
      if (values.quantize !== undefined && !(QUANTIZE_MODES as readonly string[]).includes(values.quantize)) {
        process.stderr.write(`--quantize must be one of ${QUANTIZE_MODES.join(', ')}\n`);
        process.exitCode = 2;
        return;
      }
      const result = await runBench({ quick: values.quick ?? false, threads: values.threads ? numberFlag(values.threads, 'threads') : undefined, shape: values.shape as ShapeName | undefined, quantize: values.quantize as QuantizeMode | undefined });
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

/**
 * A mistake the user can fix (a flag, the keys file, a model or adapter folder, a dataset) is one
 * line on stderr and exit status 2; anything else is a bug and keeps its stack trace.
 */
function isUsageError(err: unknown): err is Error {
  return err instanceof LoraServeError || String((err as { code?: unknown })?.code).startsWith('ERR_PARSE_ARGS_');
}

try {
  await main(process.argv.slice(2));
} catch (err) {
  if (!isUsageError(err)) throw err;
  process.stderr.write(`loraserve: ${err.message}\n`);
  process.exit(2);
}
