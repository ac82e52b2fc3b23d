#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { runBench } from './bench.js';
import { serve } from './serve.js';

const USAGE = `loraserve <command> [options]

commands:
  serve    serve the OpenAI-compatible API (see loraserve serve --help)
  bench    heterogeneous multi-LoRA batching vs serial adapter switching vs no LoRA (JSON)
           --quick   small run, under a minute on 2 cores
           --threads N`;

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'bench': {
      const { values } = parseArgs({ args: rest, options: { quick: { type: 'boolean', default: false }, threads: { type: 'string' } } });
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

await main(process.argv.slice(2));
