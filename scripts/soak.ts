/**
 * npm run soak -- --minutes M [--concurrency C] [--seed S]
 * Runs the soak (src/bench/soak.ts) and prints its JSON report; exits 1 on any unexpected outcome.
 */
import { parseArgs } from 'node:util';
import { runSoak } from '../src/bench/index.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '8' },
    seed: { type: 'string', default: '1' },
  },
});
const { report, ok } = await runSoak({
  minutes: Number(values.minutes),
  concurrency: Number(values.concurrency),
  seed: Number(values.seed),
});
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
process.exit(ok ? 0 : 1);
