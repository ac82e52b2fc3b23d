/**
 * npm run fuzz -- --cases N --seed S [--only I] [--verbose]
 * Sends N seeded, mutated requests to a real server process and prints a JSON report; exits 1
 * if any answer was a 5xx (or a server_error stream chunk), the server died, the store changed
 * or the server was unhealthy afterwards. `--only I` replays case I of that seed.
 */
import { parseArgs } from 'node:util';
import { runFuzz } from '../src/bench/index.js';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '500' },
    seed: { type: 'string', default: '1' },
    only: { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});
const report = await runFuzz({
  cases: Number(values.cases),
  seed: Number(values.seed),
  only: values.only === undefined ? undefined : Number(values.only),
  log: values.verbose ? (line) => process.stderr.write(`${line}\n`) : undefined,
});
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
const ok = report.findings.length === 0 && !report.crashed && report.healthyAfter && report.storeUnchanged && report.exitCode === 0;
process.exit(ok ? 0 : 1);
