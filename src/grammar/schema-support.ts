/**
 * Which JSON Schema a response_format may carry: every keyword structured output enforces, and a
 * 400 naming the others. XGrammar 0.1.27 silently ignores some keywords (uniqueItems, not,
 * multipleOf, …), enforces some wrongly (bounds on non-integer numbers), and aborts its WebAssembly
 * instance on others (minProperties, lookahead in patterns), so the schema is checked before it
 * reaches the compiler; each allowed keyword is covered by tests that validate generated output.
 */
import { UnsupportedSchemaError } from '../errors.js';
import { jsonSafePattern, lengthPattern } from './json-safe-pattern.js';

/** Keywords that only describe (no effect on which instances are valid). */
const ANNOTATIONS = new Set(['title', 'description', 'default', 'examples', '$comment', 'deprecated', 'readOnly', 'writeOnly']);

const ENFORCED = new Set([
  'type',
  'enum',
  'const',
  'anyOf',
  '$ref',
  '$defs',
  'definitions',
  'properties',
  'required',
  'additionalProperties',
  'maxProperties',
  'items',
  'prefixItems',
  'minItems',
  'maxItems',
  'minLength',
  'maxLength',
  'pattern',
  'format',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
]);

/**
 * String formats whose grammar admits exactly the valid strings (checked against ajv-formats on
 * sampled output). XGrammar's date and date-time allow impossible days, its time a leap second at
 * any time of day (RFC 3339 allows :60 at 23:59 only; the retrained demo model wrote "20:40:60Z"),
 * its ipv4 leading zeros, and its email, hostname, uri and uri-template are looser than the
 * standards; those get a 400.
 */
const FORMATS = new Set(['duration', 'ipv6', 'uri-reference', 'uuid', 'json-pointer', 'relative-json-pointer']);

/** Deeper schemas overflow XGrammar's stack; real ones are a few levels deep. */
const MAX_DEPTH = 64;

const TYPES = new Set(['object', 'array', 'string', 'integer', 'number', 'boolean', 'null']);

/** Which request field a schema came from, for the 400 that refuses it. */
export interface SchemaSource {
  /** The schema in words, as the error message's subject. */
  subject: string;
  /** OpenAI's `param`: the field the error points at. */
  param: string;
}

const RESPONSE_FORMAT: SchemaSource = { subject: "response_format's JSON schema", param: 'response_format' };

/**
 * The schema as the grammar compiler should read it (string patterns and lengths made JSON-safe,
 * see json-safe-pattern.ts), or an UnsupportedSchemaError naming every problem (the first few).
 */
export function compilableSchema(schema: unknown, source: SchemaSource = RESPONSE_FORMAT): unknown {
  const problems: string[] = [];
  const root = schema;
  const visit = (node: unknown, path: string): unknown => {
    if (typeof node === 'boolean') return node;
    if (path.split('/').length > MAX_DEPTH) {
      problems.push(`nesting deeper than ${MAX_DEPTH} levels at ${path}`);
      return node;
    }
    if (typeof node !== 'object' || node === null || Array.isArray(node)) {
      problems.push(`${path || '/'} is not a schema object`);
      return node;
    }
    const s: Record<string, unknown> = { ...node };
    const at = (key: string) => `${path}/${key}`;
    for (const key of Object.keys(s)) {
      if (path === '' && (key === '$schema' || key === '$id')) continue;
      if (!ENFORCED.has(key) && !ANNOTATIONS.has(key)) problems.push(`"${key}" at ${path || '/'}`);
    }
    const types = s.type === undefined ? [] : Array.isArray(s.type) ? s.type : [s.type];
    if (Array.isArray(s.type) && s.type.length === 0) problems.push(`an empty "type" list at ${path || '/'}`);
    if ('enum' in s && !(Array.isArray(s.enum) && s.enum.length > 0)) problems.push(`"enum" at ${path || '/'} is not a non-empty list`);
    for (const [low, high] of [
      ['minItems', 'maxItems'],
      ['minLength', 'maxLength'],
      ['minimum', 'maximum'],
      ['exclusiveMinimum', 'exclusiveMaximum'],
      ['minimum', 'exclusiveMaximum'],
      ['exclusiveMinimum', 'maximum'],
    ] as const) {
      const [lo, hi] = [s[low], s[high]];
      if (typeof lo === 'number' && typeof hi === 'number' && lo > hi)
        problems.push(`"${low}" above "${high}" at ${path || '/'} (nothing is valid)`);
    }
    if (s.additionalProperties === false && Array.isArray(s.required)) {
      const named = new Set(Object.keys((s.properties as object | undefined) ?? {}));
      for (const name of s.required)
        if (!named.has(name as string)) problems.push(`required "${name}" at ${path || '/'} is not among its properties`);
    }
    for (const t of types) if (typeof t !== 'string' || !TYPES.has(t)) problems.push(`type ${JSON.stringify(t)} at ${path || '/'}`);
    const bounded = ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'].filter((k) => k in s);
    if (bounded.length && !(types.length === 1 && types[0] === 'integer'))
      problems.push(`${bounded.map((k) => `"${k}"`).join(', ')} at ${path || '/'} (bounds are enforced on "type": "integer" only)`);
    for (const k of bounded) if (typeof s[k] !== 'number') problems.push(`"${k}" at ${path || '/'} is not a number`);
    if ('pattern' in s || 'minLength' in s || 'maxLength' in s) rewriteString(s, path || '/', problems);
    if ('format' in s && !FORMATS.has(s.format as string))
      problems.push(
        `format ${JSON.stringify(s.format)} at ${path || '/'} (formats enforced exactly: ${[...FORMATS].join(', ')}; use a pattern)`,
      );
    if ('$ref' in s && !resolves(root, s.$ref))
      problems.push(`"$ref" ${JSON.stringify(s.$ref)} at ${path || '/'} (only local #/$defs/… and #/definitions/…)`);
    if ('required' in s && !(Array.isArray(s.required) && s.required.every((r) => typeof r === 'string')))
      problems.push(`"required" at ${path || '/'} is not a list of names`);
    for (const key of ['properties', '$defs', 'definitions'] as const) {
      const map = s[key];
      if (map === undefined) continue;
      if (typeof map !== 'object' || map === null || Array.isArray(map)) problems.push(`"${key}" at ${path || '/'} is not an object`);
      else s[key] = Object.fromEntries(Object.entries(map).map(([name, sub]) => [name, visit(sub, `${at(key)}/${pointerToken(name)}`)]));
    }
    for (const key of ['additionalProperties', 'items'] as const) if (s[key] !== undefined) s[key] = visit(s[key], at(key));
    for (const key of ['anyOf', 'prefixItems'] as const) {
      const list = s[key];
      if (list === undefined) continue;
      if (!Array.isArray(list) || list.length === 0) problems.push(`"${key}" at ${path || '/'} is not a non-empty list`);
      else s[key] = list.map((sub, i) => visit(sub, `${at(key)}/${i}`));
    }
    return s;
  };
  const compilable = visit(schema, '');
  if (problems.length) {
    const shown = problems.slice(0, 5).join('; ') + (problems.length > 5 ? `; and ${problems.length - 5} more` : '');
    throw new UnsupportedSchemaError(
      `${source.subject} uses what structured output cannot enforce: ${shown}. Supported: ${[...ENFORCED].join(', ')} and annotations; use anyOf for oneOf`,
      { param: source.param },
    );
  }
  return compilable;
}

/** A string node's pattern, or its minLength/maxLength, as one JSON-safe pattern (in place). */
function rewriteString(s: Record<string, unknown>, where: string, problems: string[]): void {
  const { pattern, minLength, maxLength } = s;
  const isLength = (v: unknown) => v === undefined || (Number.isInteger(v) && (v as number) >= 0);
  if (pattern !== undefined) {
    if (minLength !== undefined || maxLength !== undefined || s.format !== undefined)
      return void problems.push(`"pattern" together with minLength, maxLength or format at ${where}`);
    if (typeof pattern !== 'string') return void problems.push(`"pattern" at ${where} is not a string`);
    const safe = jsonSafePattern(pattern);
    if ('problem' in safe) return void problems.push(`${safe.problem} in "pattern" at ${where}`);
    s.pattern = safe.pattern;
    return;
  }
  if (!isLength(minLength) || !isLength(maxLength)) return void problems.push(`minLength/maxLength at ${where} are not counts`);
  if (s.format !== undefined) return void problems.push(`minLength/maxLength together with format at ${where}`);
  s.pattern = lengthPattern((minLength as number | undefined) ?? 0, maxLength as number | undefined);
  delete s.minLength;
  delete s.maxLength;
}

function pointerToken(name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1');
}

/** Whether a $ref is a local JSON pointer into $defs/definitions that exists. */
function resolves(root: unknown, ref: unknown): boolean {
  if (typeof ref !== 'string' || !/^#\/(\$defs|definitions)\//.test(ref)) return ref === '#';
  let node: unknown = root;
  for (const part of ref.slice(2).split('/')) {
    const key = part.replaceAll('~1', '/').replaceAll('~0', '~');
    if (typeof node !== 'object' || node === null || !(key in node)) return false;
    node = (node as Record<string, unknown>)[key];
  }
  return true;
}
