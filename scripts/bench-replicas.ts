/**
 * npm run bench:replicas [-- --requests N --adapters N --concurrency N --slots N --max-tokens N]
 * Runs the replica benchmark (src/bench/replicas.ts) and prints its JSON result; exits 2 without haproxy.
 */
import { parseArgs } from 'node:util';
import { benchReplicas } from '../src/bench/index.js';
import { haproxyInstalled } from '../src/testing/index.js';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '90' },
    adapters: { type: 'string', default: '12' },
    concurrency: { type: 'string', default: '6' },
    slots: { type: 'string', default: '4' },
    'max-tokens': { type: 'string', default: '8' },
  },
});
if (!haproxyInstalled()) {
  process.stderr.write('bench:replicas needs haproxy (apt-get install -y haproxy)\n');
  process.exitCode = 2;
} else {
  const result = await benchReplicas({
    requests: Number(values.requests),
    adapters: Number(values.adapters),
    concurrency: Number(values.concurrency),
    slots: Number(values.slots),
    maxTokens: Number(values['max-tokens']),
  });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
