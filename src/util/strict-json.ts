/**
 * JSON.parse that refuses duplicate object keys (JSON.parse silently keeps the last one, which
 * would let an uploaded safetensors header name a tensor twice) and nesting deeper than
 * MAX_JSON_DEPTH (no file format here needs more, and deep input would exhaust the stack of
 * anything that walks it recursively).
 */
export class StrictJsonError extends Error {}

export const MAX_JSON_DEPTH = 64;

/** Whether a parsed JSON value nests containers deeper than `limit` (recursion stops at the limit). */
export function nestsDeeperThan(value: unknown, limit: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (limit === 0) return true;
  return Object.values(value).some((v) => nestsDeeperThan(v, limit - 1));
}

export function parseStrictJson(text: string): unknown {
  let pos = 0;
  let depth = 0;
  const fail = (what: string): never => {
    throw new StrictJsonError(`${what} at character ${pos}`);
  };
  const ws = () => {
    while (pos < text.length && ' \t\n\r'.includes(text[pos]!)) pos++;
  };
  const value = (): unknown => {
    ws();
    const c = text[pos];
    if (c === '{' || c === '[') {
      if (++depth > MAX_JSON_DEPTH) fail(`nesting deeper than ${MAX_JSON_DEPTH} levels`);
      const container = c === '{' ? object() : array();
      depth--;
      return container;
    }
    if (c === '"') return string();
    if (c === 't' && text.startsWith('true', pos)) return ((pos += 4), true);
    if (c === 'f' && text.startsWith('false', pos)) return ((pos += 5), false);
    if (c === 'n' && text.startsWith('null', pos)) return ((pos += 4), null);
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(pos, pos + 64));
    if (!m) return fail('unexpected token');
    pos += m[0].length;
    return Number(m[0]);
  };
  const string = (): string => {
    const start = pos;
    pos++;
    while (pos < text.length && text[pos] !== '"') pos += text[pos] === '\\' ? 2 : 1;
    if (pos >= text.length) fail('unterminated string');
    pos++;
    try {
      return JSON.parse(text.slice(start, pos)) as string;
    } catch {
      return fail('invalid string');
    }
  };
  const object = (): Record<string, unknown> => {
    pos++;
    const out: Record<string, unknown> = Object.create(null);
    ws();
    if (text[pos] === '}') return (pos++, out);
    for (;;) {
      ws();
      if (text[pos] !== '"') fail('expected a key');
      const key = string();
      if (Object.hasOwn(out, key)) throw new StrictJsonError(`duplicate key "${key}"`);
      ws();
      if (text[pos++] !== ':') fail('expected ":"');
      out[key] = value();
      ws();
      const sep = text[pos++];
      if (sep === '}') return out;
      if (sep !== ',') fail('expected "," or "}"');
    }
  };
  const array = (): unknown[] => {
    pos++;
    const out: unknown[] = [];
    ws();
    if (text[pos] === ']') return (pos++, out);
    for (;;) {
      out.push(value());
      ws();
      const sep = text[pos++];
      if (sep === ']') return out;
      if (sep !== ',') fail('expected "," or "]"');
    }
  };
  const result = value();
  ws();
  if (pos !== text.length) fail('trailing characters');
  return result;
}
