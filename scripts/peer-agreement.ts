/**
 * `npm run peer:agreement [-- --family qwen2|llama|gpt2] [--tokens N]`: builds a small random
 * model and adapter, runs loraserve and llama.cpp (F32, greedy) on the same prompt ids with and
 * without the adapter, and prints whether their continuations agree. Exits 1 when they do not.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { peerAgreement } from '../src/bench/index.js';
import type { Family } from '../src/testing/index.js';

const { values } = parseArgs({ options: { family: { type: 'string', default: 'qwen2' }, tokens: { type: 'string', default: '16' } } });
const family = values.family as Family;
if (!['qwen2', 'llama', 'gpt2'].includes(family)) throw new Error(`--family must be qwen2, llama or gpt2; got ${family}`);
const dir = mkdtempSync(join(tmpdir(), 'loraserve-peer-'));
try {
  const report = await peerAgreement({ family, dir, tokens: Number(values.tokens) });
  for (const c of report.cases) {
    console.log(
      `${c.adapter ? 'adapter' : 'base   '} prompt [${c.prompt.join(',')}]: ${c.agree ? 'agree' : 'DIFFER'} (${c.agreeingTokens}/${report.tokens} tokens) llama.cpp ids [${c.llamaTokens.join(',')}]`,
    );
    if (!c.agree) console.log(`  loraserve: ${JSON.stringify(c.loraserveText)}\n  llama.cpp: ${JSON.stringify(c.llamaText)}`);
  }
  console.log(
    JSON.stringify({ family, tokens: report.tokens, all_agree: report.allAgree, adapter_changes_output: report.adapterChangesOutput }),
  );
  if (!report.allAgree || !report.adapterChangesOutput) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
