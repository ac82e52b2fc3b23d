import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compilableSchema } from '../../src/grammar/index.js';
import { jsonSafePattern, JSON_STRING_CHAR } from '../../src/grammar/json-safe-pattern.js';

const refused = (schema: unknown, ...named: RegExp[]) =>
  assert.throws(
    () => compilableSchema(schema),
    (err: Error & { code: string; status: number }) => {
      assert.equal(err.code, 'unsupported_json_schema');
      assert.equal(err.status, 400);
      for (const re of named) assert.match(err.message, re);
      return true;
    },
  );

describe('which JSON schemas structured output takes', () => {
  it('keeps enforced keywords and annotations, and rewrites string lengths as a JSON-safe pattern', () => {
    const schema = {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      title: 'Order',
      type: 'object',
      properties: {
        id: { type: 'string', format: 'uuid', description: 'order id' },
        qty: { type: 'integer', minimum: 1, maximum: 9 },
        note: { type: 'string', maxLength: 20 },
        kind: { anyOf: [{ const: 'a' }, { $ref: '#/$defs/k' }] },
      },
      $defs: { k: { enum: ['b', 'c'] } },
      required: ['id', 'qty'],
      additionalProperties: false,
    };
    const out = compilableSchema(schema) as { properties: Record<string, Record<string, unknown>> };
    assert.deepEqual(out.properties.note, { type: 'string', pattern: `^${JSON_STRING_CHAR}{0,20}$` });
    assert.deepEqual(out.properties.id, schema.properties.id);
    assert.equal((schema.properties.note as Record<string, unknown>).maxLength, 20, 'the caller’s schema is not modified');
  });

  it('names every keyword the grammar cannot enforce, with its path', () => {
    refused(
      {
        type: 'object',
        properties: { tags: { type: 'array', uniqueItems: true }, n: { type: 'integer', multipleOf: 3 } },
        not: { const: 1 },
      },
      /"uniqueItems" at \/properties\/tags/,
      /"multipleOf" at \/properties\/n/,
      /"not" at \//,
    );
    refused({ oneOf: [{ type: 'integer' }] }, /"oneOf"/, /use anyOf for oneOf/);
    refused({ type: 'object', minProperties: 1 }, /"minProperties"/);
    refused({ type: 'number', minimum: 0.5 }, /bounds are enforced on "type": "integer" only/);
    refused({ type: 'string', format: 'date' }, /format "date"/);
    refused({ type: 'string', format: 'time' }, /format "time"/);
    refused({ type: 'string', pattern: '^a$', maxLength: 3 }, /"pattern" together with/);
    refused({ $ref: 'https://example.com/s.json' }, /only local/);
    refused({ $ref: '#/$defs/missing' }, /"\$ref"/);
    refused({ type: 'strnig' }, /type "strnig"/);
    refused({ properties: [] }, /"properties" at \/ is not an object/);
  });

  it('refuses schemas nothing satisfies, and nesting past the limit, before they reach the compiler', () => {
    refused({ type: 'array', minItems: 3, maxItems: 1 }, /"minItems" above "maxItems"/);
    refused({ type: 'integer', minimum: 5, exclusiveMaximum: 2 }, /"minimum" above "exclusiveMaximum"/);
    refused({ enum: [] }, /"enum" at \/ is not a non-empty list/);
    refused({ type: [] }, /empty "type" list/);
    refused({ type: 'object', properties: {}, required: ['a'], additionalProperties: false }, /required "a"/);
    refused(JSON.parse(`${'{"items":'.repeat(70)}{}${'}'.repeat(70)}`), /nesting deeper than 64 levels/);
  });
});

describe('patterns made safe inside a JSON string', () => {
  it('rewrites "." to a character JSON allows unescaped and keeps safe constructs', () => {
    assert.deepEqual(jsonSafePattern('^a.b$'), { pattern: `^a${JSON_STRING_CHAR}b$` });
    for (const p of ['^[A-Z]{2}-\\d{3}$', '^(yes|no)$', '^(?:ab)+\\.\\w*$', '^[a-z0-9_\\-]+$', '^\\u00e9+$', '[가-힣]+'])
      assert.deepEqual(jsonSafePattern(p), { pattern: p }, p);
  });

  it('refuses what could spell a quote, a backslash or a control character, and what the grammar cannot read', () => {
    const cases: Array<[string, RegExp]> = [
      ['^"a"$', /quote/],
      ['^a\\\\b$', /backslash/],
      ['^[ -~]+$', /class member/],
      ['^[^a]+$', /negated/],
      ['^\\s+$', /\\s/],
      ['^\\W$', /\\W/],
      ['^a\\nb$', /control/],
      ['^\\x22$', /quote, backslash or control/],
      ['^(?=a)a$', /lookaround/],
      ['^(a)\\1$', /backreferences/],
      ['^\\p{L}+$', /Unicode property/],
      ['^(?<n>a)$', /named groups/],
      ['^[abc', /unclosed/],
    ];
    for (const [p, re] of cases) {
      const r = jsonSafePattern(p);
      assert.ok('problem' in r, `${p} is refused`);
      assert.match(r.problem, re, p);
    }
  });
});
