/**
 * npm run bench:matmul-nbits [-- --threads 2] [--seconds 0.4]
 * Runs the single-op MatMulNBits benchmark (src/bench/matmul-nbits.ts): a line per shape, then JSON.
 */
import { parseArgs } from 'node:util';
import { benchMatMulNBits } from '../src/bench/index.js';

const { values } = parseArgs({ options: { threads: { type: 'string', default: '2' }, seconds: { type: 'string', default: '0.4' } } });
const threads = Number(values.threads);
const results = await benchMatMulNBits({ threads, seconds: Number(values.seconds) }, (line) => console.log(line));
console.log(JSON.stringify({ threads, results }));
