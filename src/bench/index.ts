export { runBench, type BenchOptions } from './run-bench.js';
export { SHAPES, type ShapeName } from './shapes.js';
