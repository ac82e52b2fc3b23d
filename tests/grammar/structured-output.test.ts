/**
 * Structured output end to end below the HTTP layer: XGrammar (the real WebAssembly build) compiles
 * each schema for a real tokenizer, the engine decodes under its masks, and every output is
 * checked with an independent JSON Schema validator (ajv with formats). Greedy and sampled rows,
 * constrained and free rows, share each batch; the free rows must decode exactly as they do alone.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import ajvFormats from 'ajv-formats';
import type { Engine, GenerationResult } from '../../src/engine/index.js';
import { createEngine } from '../helpers/backend.js';
import { StructuredOutput, type OutputConstraint } from '../../src/grammar/index.js';
import { readAdapterFolder } from '../../src/lora/index.js';
import { writeRandomModel } from '../../src/testing/index.js';
import { trainByteLevelBpe } from '../../src/train/index.js';
import { tempDir } from '../helpers/adapters.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

const point = {
  type: 'object',
  properties: { x: { type: 'integer', minimum: -9, maximum: 9 }, y: { type: 'integer', minimum: -9, maximum: 9 } },
  required: ['x', 'y'],
  additionalProperties: false,
};

/** Schemas whose every instance is short, so every sampled output must end with the grammar. */
const SCHEMAS: Record<string, object> = {
  person: {
    type: 'object',
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 8 },
      age: { type: 'integer', minimum: 0, maximum: 120 },
      member: { type: 'boolean' },
      tags: { type: 'array', items: { enum: ['vip', 'new', 'legal'] }, maxItems: 3 },
    },
    required: ['name', 'age', 'member', 'tags'],
    additionalProperties: false,
  },
  formats: {
    type: 'object',
    properties: {
      code: { type: 'string', pattern: '^[A-Z]{2}-\\d{3}$' },
      day: { type: 'string', pattern: '^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\\d|2[0-8])$' },
      addr: { type: 'string', format: 'ipv6' },
      id: { type: 'string', format: 'uuid' },
      note: { anyOf: [{ type: 'integer', minimum: 0, maximum: 9 }, { type: 'null' }] },
    },
    required: ['code', 'day', 'addr', 'id', 'note'],
    additionalProperties: false,
  },
  refs: {
    $defs: { point },
    type: 'object',
    properties: { from: { $ref: '#/$defs/point' }, to: { $ref: '#/$defs/point' }, label: { const: 'segment' } },
    required: ['from', 'to', 'label'],
    additionalProperties: false,
  },
  tuple: {
    type: 'array',
    prefixItems: [{ type: 'integer', minimum: 1, maximum: 5 }, { type: 'string', pattern: '^(yes|no)$' }, { type: 'boolean' }],
    items: false,
  },
};

const ajv = new Ajv2020({ strict: false });
ajvFormats.default(ajv);

interface Run {
  engine: Engine;
  structured: StructuredOutput;
}

async function decodeBatch(run: Run, schema: object, opts: { slot?: number; prompt: number[] }): Promise<void> {
  const constraint = (await run.structured.constraint({ type: 'json_schema', json_schema: { name: 'test', schema } })) as OutputConstraint;
  const validate = ajv.compile(schema);
  const free = (i: number) => ({ promptTokens: [...opts.prompt, 40 + i], maxTokens: 12, sampling: { temperature: 0 }, ignoreEos: true });
  const alone = await Promise.all([0, 1].map((i) => run.engine.generate(free(i)).result));
  const constrained = Array.from({ length: 8 }, (_, i) =>
    run.engine.generate({
      promptTokens: [...opts.prompt, i],
      slot: opts.slot ?? 0,
      maxTokens: 160,
      sampling: i === 0 ? { temperature: 0 } : { temperature: 1, seed: 100 + i },
      constraint,
    }),
  );
  const together = [0, 1].map((i) => run.engine.generate(free(i)));
  const results: GenerationResult[] = await Promise.all(constrained.map((g) => g.result));
  for (const [i, r] of results.entries()) {
    assert.equal(r.finishReason, 'stop', `row ${i} ended with the grammar: ${r.text}`);
    const value = JSON.parse(r.text);
    assert.ok(validate(value), `row ${i} ${r.text}: ${JSON.stringify(validate.errors)}`);
  }
  const mixed = await Promise.all(together.map((g) => g.result));
  assert.deepEqual(
    mixed.map((r) => r.text),
    alone.map((r) => r.text),
    'free rows in a constrained batch decode as they do alone',
  );
}

function structured(engine: Engine): StructuredOutput {
  return new StructuredOutput(engine.tokenizer, {
    vocabSize: engine.model.dims.vocabSize,
    stopTokenIds: [...engine.scheduler.eosTokenIds],
  });
}

describe('structured output on a random model with a byte vocabulary', () => {
  let run: Run;
  before(async () => {
    const tiny = writeRandomModel(join(tempDir(), 'bytes'), { family: 'llama', seed: 5 });
    const engine = await createEngine({ modelDir: tiny.dir, slots: 0, maxRank: 0 });
    run = { engine, structured: structured(engine) };
  });
  after(() => run.engine.close());

  for (const [name, schema] of Object.entries(SCHEMAS)) {
    it(`${name}: every greedy and sampled output validates; free rows are untouched`, () => decodeBatch(run, schema, { prompt: [1, 2] }));
  }

  it('json_object: outputs that end are JSON objects; compiled grammars are reused', async () => {
    const compiled = run.structured.compilations;
    const constraint = await run.structured.constraint({ type: 'json_object' });
    await run.structured.constraint({ type: 'json_object' });
    assert.equal(run.structured.compilations, compiled + 1, 'the second request reuses the compiled grammar');
    const results = await Promise.all(
      Array.from(
        { length: 8 },
        (_, i) =>
          run.engine.generate({ promptTokens: [9, i], maxTokens: 200, sampling: { temperature: 1, seed: i }, constraint: constraint! })
            .result,
      ),
    );
    const ended = results.filter((r) => r.finishReason === 'stop');
    assert.ok(ended.length >= 4, `${ended.length} of 8 ended`);
    for (const r of ended) {
      const value = JSON.parse(r.text);
      assert.ok(typeof value === 'object' && value !== null && !Array.isArray(value), r.text);
    }
    for (const r of results.filter((x) => x.finishReason === 'length'))
      assert.equal(r.text[0], '{', 'a cut-off output is still an object so far');
  });
});

describe('a schema XGrammar itself fails on', () => {
  it("is a 400 carrying XGrammar's reason, and the next schema compiles and decodes on a fresh instance", async () => {
    const tiny = writeRandomModel(join(tempDir(), 'fails'), { family: 'llama', seed: 9 });
    const engine = await createEngine({ modelDir: tiny.dir, slots: 0, maxRank: 0 });
    try {
      const run = { engine, structured: structured(engine) };
      await assert.rejects(
        run.structured.constraint({ type: 'json_schema', json_schema: { name: 'bad', schema: { type: 'string', pattern: '^(ab$' } } }),
        (err: Error & { code: string }) => {
          assert.equal(err.code, 'unsupported_json_schema');
          assert.match(err.message, /could not be compiled: Regex parsing error at position \d+: The parenthesis is not closed/);
          return true;
        },
      );
      const compiled = run.structured.compilations;
      await assert.rejects(
        run.structured.constraint({ type: 'json_schema', json_schema: { name: 'bad', schema: { type: 'string', pattern: '^(ab$' } } }),
        /The parenthesis is not closed/,
      );
      assert.equal(run.structured.compilations, compiled, 'the same bad schema again is refused from memory');
      await decodeBatch(run, SCHEMAS.tuple!, { prompt: [1, 2] });
    } finally {
      await engine.close();
    }
  });
});

describe('structured output on a random model with multi-character BPE tokens', () => {
  let run: Run;
  before(async () => {
    const texts = Object.values(SCHEMAS).map((s) => JSON.stringify(s));
    texts.push('{"name":"Kim","age":41,"member":true,"tags":["vip"]}', '{"x":1,"y":-2}', '[1,"yes",false] 2024-05-06 a@b.io');
    const merges = trainByteLevelBpe(texts, 300);
    const tiny = writeRandomModel(join(tempDir(), 'bpe'), { family: 'qwen2', seed: 6, merges, vocabSize: 256 + merges.length + 8 });
    const engine = await createEngine({ modelDir: tiny.dir, slots: 0, maxRank: 0 });
    run = { engine, structured: structured(engine) };
  });
  after(() => run.engine.close());

  for (const name of ['person', 'refs', 'tuple']) {
    it(`${name}: every output validates across token boundaries that span JSON syntax`, () =>
      decodeBatch(run, SCHEMAS[name]!, { prompt: [3, 4] }));
  }
});

describe('structured output on the embedded demo model through an adapter', () => {
  let run: Run;
  before(async () => {
    const engine = await createEngine({ modelDir: join(root, 'models/loraserve-demo'), slots: 1, maxRank: 32 });
    const files = readAdapterFolder(join(root, 'adapters/medical'));
    engine.slots!.write(1, engine.parseAdapter(files.config, files.weights));
    run = { engine, structured: structured(engine) };
  });
  after(() => run.engine.close());

  it('person and formats: base and adapter rows validate', async () => {
    const prompt = run.engine.tokenizer.applyChatTemplate([{ role: 'user', content: '환자 정보를 JSON으로 주세요' }]);
    await decodeBatch(run, SCHEMAS.person!, { prompt });
    await decodeBatch(run, SCHEMAS.formats!, { prompt, slot: 1 });
  });
});
