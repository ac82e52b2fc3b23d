/**
 * `npm run demo:eval` (run at the end of `npm run demo:adapters` too): measures
 * the committed demo's figures with src/bench/demo-eval.ts, prints them, writes them to
 * adapters/demo-eval.json and into the evaluation section of each adapter's README.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEMO_DOMAINS, evaluateDemo, type DemoEvalReport, type Score } from '../src/bench/index.js';

const START = '<!-- demo-eval: written by scripts/demo-eval.ts -->';
const END = '<!-- /demo-eval -->';
const pct = (s: Score) => `${s.hits}/${s.total} (${(100 * s.share).toFixed(0)}%)`;

export async function runDemoEval(root: string): Promise<DemoEvalReport> {
  const report = await evaluateDemo(root);
  writeFileSync(join(root, 'adapters/demo-eval.json'), `${JSON.stringify(report, null, 2)}\n`);
  const g = report.general;
  const lines = [
    `demo-eval: greedy, up to ${report.maxTokens} tokens per answer`,
    ...DEMO_DOMAINS.map(
      (d) =>
        `  ${d}: held-out questions with the key fact ${pct(report.domains[d].heldOut)}, trained ${pct(report.domains[d].trained)}, greeting/capability prompts answered as the base does ${pct(g.adapters[d])}`,
    ),
    `  base model: greeting/capability prompts answered with their kind of answer ${pct(g.base)} (${g.trainedPrompts} trained, ${g.heldOutPrompts} held out)`,
    `  answers holding U+FFFD: ${report.replacementCharacters.withFffd} of ${report.replacementCharacters.answers}`,
  ];
  process.stderr.write(`${lines.join('\n')}\n`);
  for (const d of DEMO_DOMAINS) {
    const path = join(root, 'adapters', d, 'README.md');
    const readme = readFileSync(path, 'utf8');
    const r = report.domains[d];
    const section = `${START}
## Evaluation

Measured by \`npm run demo:eval\` (scripts/demo-eval.ts, also run by \`npm run demo:adapters\`) on the committed model
and adapters, greedy, up to ${report.maxTokens} tokens; details in ../demo-eval.json.

| | |
| --- | --- |
| held-out questions (valid.jsonl, never trained on) answered with the key fact | ${pct(r.heldOut)} |
| training questions answered with the key fact | ${pct(r.trained)} |
| greeting / "what can you do" prompts (${g.trainedPrompts} from base-chat, ${g.heldOutPrompts} held out) answered with the base model's kind of answer, word for word | ${pct(g.adapters[d])} |
| answers holding U+FFFD, every prompt through the base model and every adapter | ${report.replacementCharacters.withFffd} of ${report.replacementCharacters.answers} |
${END}`;
    const at = readme.indexOf(START);
    const next =
      at < 0 ? `${readme.trimEnd()}\n\n${section}\n` : `${readme.slice(0, at)}${section}${readme.slice(readme.indexOf(END) + END.length)}`;
    writeFileSync(path, next);
  }
  return report;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await runDemoEval(fileURLToPath(new URL('..', import.meta.url)));
}
