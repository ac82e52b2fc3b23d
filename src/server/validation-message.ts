/**
 * Turns the schema validator's error list into one sentence that names the field and the rule,
 * the way the OpenAI API answers (`messages[0].role must be one of system, user, assistant`),
 * instead of one fragment per `anyOf` branch. Needs Ajv's `verbose` option (schemas and data on
 * each error).
 */

export interface SchemaError {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
  schema?: unknown;
  parentSchema?: Record<string, unknown>;
  data?: unknown;
}

/** `/messages/0/role` → `messages[0].role` (JSON Pointer to the notation OpenAI uses in `param`). */
export function fieldPath(pointer: string, child?: string): string {
  const parts = pointer
    .split('/')
    .slice(1)
    .map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'));
  if (child !== undefined) parts.push(child);
  return parts.reduce((out, p) => (/^\d+$/.test(p) ? `${out}[${p}]` : out ? `${out}.${p}` : p), '');
}

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  integer: 'an integer',
  boolean: 'a boolean',
  object: 'an object',
  array: 'an array',
  null: 'null',
};

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a number';
  return TYPE_WORDS[typeof v] ?? typeof v;
}

const shown = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

/** `string` → `strings`, `array of integers` → `arrays of integers`. */
const plural = (noun: string) => noun.replace(/^(\w+)/, '$1s');

/** What a schema accepts, in words: `a string`, `an array of strings`, `"text"`. */
function describe(schema: unknown): string[] {
  const s = (schema ?? {}) as Record<string, unknown>;
  if (Array.isArray(s.anyOf)) return s.anyOf.flatMap(describe);
  if ('const' in s) return [shown(s.const)];
  if (Array.isArray(s.enum)) return s.enum.map(shown);
  const type = s.type as string | undefined;
  if (type === 'array' && s.items) {
    const items = describe(s.items);
    return [`an array of ${items.length === 1 ? plural(items[0]!.replace(/^an? /, '')) : `(${items.join(' or ')})`}`];
  }
  return [type ? (TYPE_WORDS[type] ?? type) : 'a valid value'];
}

const listed = (words: string[]) => (words.length <= 2 ? words.join(' or ') : `${words.slice(0, -1).join(', ')} or ${words.at(-1)}`);
const TYPE_OR_VALUE = new Set(['type', 'const', 'enum', 'anyOf']);
const depth = (pointer: string) => (pointer ? pointer.split('/').length : 0);

/** The rule one (non-anyOf) error broke, as a sentence about its field. */
function sentence(e: SchemaError): { field: string; text: string } {
  const field = fieldPath(e.instancePath);
  const p = e.params;
  const n = (k: string) => p[k] as number;
  const plural = (k: string, word: string) => `${n(k)} ${word}${n(k) === 1 ? '' : 's'}`;
  switch (e.keyword) {
    case 'required':
      return { field: fieldPath(e.instancePath, String(p.missingProperty)), text: 'is required' };
    case 'type':
      return {
        field,
        text: `must be ${listed(
          String(p.type)
            .split(',')
            .map((t) => TYPE_WORDS[t] ?? t),
        )}, not ${typeOf(e.data)}`,
      };
    case 'const':
      return { field, text: `must be ${JSON.stringify(p.allowedValue)}` };
    case 'enum':
      return { field, text: `must be one of ${(p.allowedValues as unknown[]).map(shown).join(', ')}` };
    case 'minimum':
      return { field, text: `must be at least ${n('limit')}` };
    case 'maximum':
      return { field, text: `must be at most ${n('limit')}` };
    case 'exclusiveMinimum':
      return { field, text: `must be greater than ${n('limit')}` };
    case 'exclusiveMaximum':
      return { field, text: `must be less than ${n('limit')}` };
    case 'minItems':
      return { field, text: `must hold at least ${plural('limit', 'item')}` };
    case 'maxItems':
      return { field, text: `must hold at most ${plural('limit', 'item')}` };
    case 'minLength':
      return { field, text: `must be at least ${plural('limit', 'character')} long` };
    case 'maxLength':
      return { field, text: `must be at most ${plural('limit', 'character')} long` };
    case 'pattern':
      return { field, text: `must match ${String(p.pattern)}` };
    case 'additionalProperties':
      return { field: fieldPath(e.instancePath, String(p.additionalProperty)), text: 'is not a known field' };
    default:
      return { field, text: e.message ?? 'is invalid' };
  }
}

const within = (e: SchemaError, top: SchemaError) =>
  e.instancePath === top.instancePath || e.instancePath.startsWith(`${top.instancePath}/`);

/**
 * The error that explains a failed `anyOf` best (its branches' errors precede it in the list):
 * the one that got deepest into the value, else one that matched the type but broke a bound,
 * else the `anyOf` itself (described as the list of what its branches accept).
 */
function explain(errors: SchemaError[], top: SchemaError): SchemaError {
  const under = errors.slice(0, errors.indexOf(top)).filter((e) => within(e, top));
  const most = Math.max(...under.map((e) => depth(e.instancePath)));
  if (most > depth(top.instancePath)) {
    const deepest = under.filter((e) => depth(e.instancePath) === most).at(-1)!;
    return deepest.keyword === 'anyOf' ? explain(errors, deepest) : deepest;
  }
  return under.find((e) => !TYPE_OR_VALUE.has(e.keyword)) ?? top;
}

/** One sentence for a failed validation, and the field it names (OpenAI's `param`). */
export function validationMessage(errors: SchemaError[], context = 'body'): { message: string; param: string | null } {
  const last = errors.at(-1);
  if (!last) return { message: `the request ${context} is invalid`, param: null };
  const top = last.keyword === 'anyOf' ? explain(errors, last) : last;
  let field: string;
  let text: string;
  if (top.keyword === 'anyOf') {
    field = fieldPath(top.instancePath);
    const branches = (Array.isArray(top.schema) ? top.schema : []) as Array<Record<string, unknown>>;
    const words = [...new Set(describe({ anyOf: branches }))];
    const allValues = branches.length > 0 && branches.every((b) => 'const' in b);
    if (allValues)
      text = `must be one of ${words.join(', ')}${typeof top.data === 'string' || typeof top.data === 'number' ? ` (got ${JSON.stringify(top.data)})` : ''}`;
    else text = `must be ${listed(words)}, not ${typeOf(top.data)}`;
  } else ({ field, text } = sentence(top));
  const subject = field || (context === 'body' ? 'the request body' : `the ${context}`);
  return { message: `${subject} ${text}`, param: field || null };
}
