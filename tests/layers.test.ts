import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * The import direction of README.md ("How it works": "Imports point down"), checked on every `import`,
 * `export … from` and `import()` in src/. A layer may import only layers ranked below it; layers of
 * equal rank are siblings and may not import each other (model ↔ tokenizer, lora ↔ grammar). The
 * fine-tuning jobs (`finetune/`) sit between the trainer and the server: the server reaches the
 * trainer only through them (SEPARATE), and their worker process is the one place it runs. Fixtures (`testing/`) sit above every serving layer, so only the drivers (`bench/`), the CLI,
 * tests and scripts can reach them. Files import each other without cycles, type-only imports included.
 */
const RANK: Record<string, number> = {
  util: 0,
  errors: 0,
  model: 1,
  tokenizer: 1,
  lora: 2,
  grammar: 2,
  engine: 3,
  train: 4,
  finetune: 5,
  server: 6,
  testing: 7,
  bench: 8,
  cli: 9,
};

/** Layers that may not import each other although their ranks would allow it. */
const SEPARATE: Array<[string, string]> = [['server', 'train']];

/** Leaf helpers imported file by file; every other layer is imported through its index.ts. */
const NO_INDEX = new Set(['util', 'errors']);

/** Runtime libraries and the one layer (or file) allowed to import them. */
const OWNERS: Array<[RegExp, string]> = [
  [/^onnxruntime-node$/, 'engine/onnx-backend.ts'],
  [/^@tensorflow\//, 'train/'],
  [/^@huggingface\/transformers$/, 'tokenizer/'],
  [/^(fastify|fastify-plugin|@fastify\/.*)$/, 'server/'],
  [/^node-llama-cpp$/, 'bench/'],
  [/^@mlc-ai\/web-xgrammar$/, 'grammar/xgrammar-module.ts'],
];

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

const layerOf = (rel: string) => (rel.includes(sep) ? rel.split(sep)[0]! : rel.replace(/\.ts$/, ''));
const posix = (p: string) => p.split(sep).join('/');

function importsOf(file: string): string[] {
  return ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles.map((f) => f.fileName);
}

/** What is wrong with `file` (relative to src/) importing each of `specs`. */
function violations(file: string, specs: string[]): string[] {
  const from = layerOf(file);
  const wrong: string[] = [];
  for (const spec of specs) {
    const owner = OWNERS.find(([pattern]) => pattern.test(spec))?.[1];
    if (owner && !posix(file).startsWith(owner)) wrong.push(`src/${posix(file)} imports ${spec}, which only src/${owner} may import`);
    if (!spec.startsWith('.')) continue;
    const target = relative(SRC, resolve(SRC, dirname(file), spec)).replace(/\.js$/, '.ts');
    const to = layerOf(target);
    if (target.startsWith('..')) wrong.push(`src/${posix(file)} imports ${spec}, outside src/`);
    else if (to === from) continue;
    else if (SEPARATE.some(([x, y]) => x === from && y === to))
      wrong.push(`src/${posix(file)} (${from}) imports ${spec} (${to}): ${from} reaches ${to} only through finetune`);
    else if (!(RANK[to]! < RANK[from]!)) wrong.push(`src/${posix(file)} (${from}) imports ${spec} (${to}): ${to} is not below ${from}`);
    else if (!NO_INDEX.has(to) && posix(target) !== `${to}/index.ts`)
      wrong.push(`src/${posix(file)} imports ${spec}: go through ${to}/index.ts`);
  }
  return wrong;
}

/** One import cycle among `graph`'s files (file → the files it imports), as a path that ends where it began; null if none. */
function findCycle(graph: Map<string, string[]>): string[] | null {
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (file: string): string[] | null => {
    const at = path.indexOf(file);
    if (at >= 0) return [...path.slice(at), file];
    if (done.has(file)) return null;
    path.push(file);
    for (const next of graph.get(file) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    done.add(file);
    return null;
  };
  for (const file of graph.keys()) {
    const cycle = visit(file);
    if (cycle) return cycle;
  }
  return null;
}

const files = sourceFiles(SRC).map((f) => relative(SRC, f));

/** Every file of src/ → the src/ files it imports (relative imports only), as posix paths relative to src/. */
const importGraph = new Map(
  files.map((f) => [
    posix(f),
    importsOf(join(SRC, f))
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => posix(relative(SRC, resolve(SRC, dirname(f), spec)).replace(/\.js$/, '.ts'))),
  ]),
);

describe('layers', () => {
  it('every folder under src/ has a rank', () => {
    for (const f of files) assert.ok(layerOf(f) in RANK, `src/${posix(f)}: its layer "${layerOf(f)}" has no rank in tests/layers.test.ts`);
  });

  it('imports point down the layers, into a layer through its index.ts; runtime libraries stay with their owner', () => {
    assert.deepEqual(
      files.flatMap((f) => violations(f, importsOf(join(SRC, f)))),
      [],
    );
  });

  it('no import cycle among the files of src/', () => {
    const cycle = findCycle(importGraph);
    assert.equal(cycle, null, `import cycle: ${cycle?.map((f) => `src/${f}`).join(' → ')}`);
  });

  it('the cycle check finds a made-up cycle, however long', () => {
    const graph = new Map(importGraph);
    graph.set('util/rng.ts', [...(graph.get('util/rng.ts') ?? []), 'model/graph-ops.ts']);
    graph.set('model/graph-ops.ts', [...(graph.get('model/graph-ops.ts') ?? []), 'util/half.ts']);
    graph.set('util/half.ts', [...(graph.get('util/half.ts') ?? []), 'util/rng.ts']);
    const cycle = findCycle(graph);
    assert.ok(cycle, 'no cycle found');
    assert.equal(cycle[0], cycle.at(-1));
    assert.ok(
      ['util/rng.ts', 'model/graph-ops.ts', 'util/half.ts'].every((f) => cycle.includes(f)),
      cycle.join(' → '),
    );
    assert.equal(
      findCycle(
        new Map([
          ['a.ts', ['b.ts']],
          ['b.ts', []],
        ]),
      ),
      null,
    );
  });

  it('the check catches upward, sibling, fixture, past-the-index and library imports', () => {
    const cases: Array<[string, string, RegExp]> = [
      [join('model', 'hf-model.ts'), '../engine/index.js', /engine is not below model/],
      [join('model', 'hf-model.ts'), '../tokenizer/index.js', /tokenizer is not below model/],
      [join('train', 'trainer.ts'), '../server/index.js', /server is not below train/],
      [join('server', 'serving.ts'), '../train/index.js', /server reaches train only through finetune/],
      [join('finetune', 'jobs.ts'), '../server/index.js', /server is not below finetune/],
      [join('engine', 'engine.ts'), '../testing/index.js', /testing is not below engine/],
      [join('server', 'serving.ts'), '../lora/adapter-cache.js', /go through lora\/index.ts/],
      [join('server', 'app.ts'), 'onnxruntime-node', /only src\/engine\/onnx-backend.ts may import/],
    ];
    for (const [file, spec, message] of cases) assert.match(violations(file, [spec]).join('\n'), message, `${file} → ${spec}`);
    assert.deepEqual(
      violations(join('bench', 'run-bench.ts'), ['../testing/index.js', '../util/rng.js', '../errors.js', './shapes.js']),
      [],
    );
  });
});
