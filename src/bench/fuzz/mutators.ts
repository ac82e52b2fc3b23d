/**
 * Seeded mutations for the fuzzer: on a JSON value (wrong types, huge numbers, deep nesting,
 * unicode, `__proto__`, path tricks, removed or extra keys) and on raw bytes (bit flips,
 * truncation, insertion, duplication). The same seed gives the same mutations.
 */
import { rng } from '../../util/rng.js';

export type Rng = ReturnType<typeof rng>;

export class Dice {
  private readonly r: Rng;
  constructor(seed: number) {
    this.r = rng(seed);
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.r.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.r.next() < p;
  }
}

export const WEIRD_STRINGS: readonly string[] = [
  '',
  ' ',
  '\u0000',
  '\ud800',
  '\udfff',
  'a\ud800b',
  '\u202egnp.exe',
  '\ufeffmodel',
  '\u200b',
  'e\u0301',
  '💥🧨',
  '🏳️‍🌈'.repeat(64),
  '한국어 텍스트',
  'ﷺ',
  '\r\nx-injected: 1',
  '\\',
  '"',
  "'",
  '<script>alert(1)</script>',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a log-injection probe, literal on purpose
  '${jndi:ldap://x}',
  '%00',
  '%2e%2e%2f',
  '../../etc/passwd',
  '/etc/passwd',
  '..\\..\\windows\\win.ini',
  'C:\\Windows\\system32',
  'a/../../b',
  './adapter',
  '.hidden',
  '~',
  'CON',
  'nul',
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'null',
  'undefined',
  'NaN',
  'true',
  '0',
  '(.*)*x',
  '(a|a)*b',
  '([a-z.]+)+\\d$',
  '[',
  '*',
  'all-linear',
  'q_proj',
  'x'.repeat(65),
  'x'.repeat(10_000),
];

export const WEIRD_NUMBERS: readonly number[] = [
  0,
  -0,
  -1,
  1,
  1.5,
  -1.5,
  0.1,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 53),
  2 ** 64,
  1e21,
  1e100,
  1e308,
  -1e308,
  5e-324,
  1e-320,
  255,
  256,
  65536,
];

/** Numbers JSON.stringify cannot write, inserted as text. */
export const WEIRD_NUMBER_TEXT: readonly string[] = [
  '1e999',
  '-1e999',
  '1'.padEnd(400, '0'),
  '-0.0',
  '0e0',
  '1E+2',
  `0.${'0'.repeat(400)}1`,
];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** A placeholder that `serialize` swaps for raw text JSON.stringify cannot produce. */
const RAW = '\u0001raw:';
const raw = (text: string) => `${RAW}${text}\u0001`;

export function serialize(value: unknown): string {
  return (JSON.stringify(value) ?? '').replace(/"\\u0001raw:((?:[^\\]|\\.)*?)\\u0001"/g, (_m, text: string) => JSON.parse(`"${text}"`));
}

function randomValue(d: Dice, depth = 0): Json {
  switch (d.int(depth > 2 ? 4 : 6)) {
    case 0:
      return null;
    case 1:
      return d.chance(0.5);
    case 2:
      return d.pick(WEIRD_NUMBERS);
    case 3:
      return d.pick(WEIRD_STRINGS);
    case 4:
      return Array.from({ length: d.int(4) }, () => randomValue(d, depth + 1));
    default:
      return Object.fromEntries(Array.from({ length: d.int(4) }, () => [d.pick(WEIRD_STRINGS), randomValue(d, depth + 1)]));
  }
}

/** Every (container, key) in a JSON value, the root as (null, null). */
function slots(v: Json, out: Array<[Json[] | Record<string, Json> | null, string | number | null]> = [[null, null]]) {
  if (Array.isArray(v)) v.forEach((x, i) => (out.push([v, i]), slots(x, out)));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push([v, k]), slots(x, out);
  return out;
}

const TREE_OPS = [
  'wrongType',
  'weirdNumber',
  'numberText',
  'weirdString',
  'deep',
  'remove',
  'extraKey',
  'protoKey',
  'emptyValue',
  'bigArray',
] as const;

/** One structural mutation of a (deep-copied) JSON value; returns it and what was done. */
export function mutateJson(value: unknown, d: Dice): { value: unknown; what: string } {
  const root = { root: structuredClone(value) as Json };
  const all = slots(root.root).map(([c, k]) =>
    c === null ? ([root, 'root'] as [Record<string, Json>, string]) : ([c, k!] as [Json[] | Record<string, Json>, string | number]),
  );
  const [container, key] = d.pick(all);
  const set = (v: unknown) => ((container as Record<string | number, unknown>)[key] = v);
  const op = d.pick(TREE_OPS);
  const at = key === 'root' && container === root ? '(root)' : String(key);
  switch (op) {
    case 'wrongType':
      set(randomValue(d));
      break;
    case 'weirdNumber':
      set(d.pick(WEIRD_NUMBERS));
      break;
    case 'numberText':
      set(raw(d.pick(WEIRD_NUMBER_TEXT)));
      break;
    case 'weirdString':
      set(d.pick(WEIRD_STRINGS));
      break;
    case 'deep': {
      const n = d.pick([64, 1000, 20_000]);
      const [open, close] = d.chance(0.5) ? ['[', ']'] : ['{"a":', '}'];
      set(raw(`${open.repeat(n)}1${close.repeat(n)}`));
      break;
    }
    case 'remove':
      if (Array.isArray(container)) container.splice(Number(key), 1);
      else delete (container as Record<string, Json>)[key as string];
      break;
    case 'extraKey': {
      const target = (container as Record<string | number, Json>)[key];
      if (target && typeof target === 'object' && !Array.isArray(target)) target[d.pick(WEIRD_STRINGS)] = randomValue(d);
      else set({ [d.pick(WEIRD_STRINGS)]: target ?? null });
      break;
    }
    case 'protoKey': {
      const target = (container as Record<string | number, Json>)[key];
      const obj = target && typeof target === 'object' && !Array.isArray(target) ? target : {};
      const name = d.pick(['__proto__', 'constructor', 'prototype']);
      Object.defineProperty(obj, name, {
        value: name === 'constructor' ? { prototype: { polluted: true } } : { polluted: true, admin: true },
        enumerable: true,
        configurable: true,
        writable: true,
      });
      set(obj);
      break;
    }
    case 'emptyValue':
      set(d.pick([[], {}, '', null, 0]));
      break;
    case 'bigArray':
      set(Array.from({ length: d.pick([100, 5000]) }, () => d.pick(['x', 1, null, { role: 'user', content: 'x' }])));
      break;
  }
  return { value: root.root, what: `${op} at ${at}` };
}

const BYTE_OPS = ['flip', 'truncate', 'insert', 'duplicate', 'zero'] as const;

/** One byte-level mutation of a copy of `bytes`. */
export function mutateBytes(bytes: Uint8Array, d: Dice, range: [number, number] = [0, bytes.length]): { bytes: Uint8Array; what: string } {
  const [from, to] = range;
  const pos = from + d.int(Math.max(1, to - from));
  const op = d.pick(BYTE_OPS);
  let out: Uint8Array;
  switch (op) {
    case 'flip': {
      out = bytes.slice();
      const flips = 1 + d.int(8);
      for (let i = 0; i < flips; i++) {
        const p = from + d.int(Math.max(1, to - from));
        if (p < out.length) out[p]! ^= 1 << d.int(8);
      }
      return { bytes: out, what: `${flips} bit flips in [${from}, ${to})` };
    }
    case 'truncate':
      return { bytes: bytes.slice(0, pos), what: `truncated at ${pos}` };
    case 'insert': {
      const junk = Uint8Array.from({ length: 1 + d.int(64) }, () => d.int(256));
      out = new Uint8Array(bytes.length + junk.length);
      out.set(bytes.subarray(0, pos));
      out.set(junk, pos);
      out.set(bytes.subarray(pos), pos + junk.length);
      return { bytes: out, what: `${junk.length} random bytes inserted at ${pos}` };
    }
    case 'duplicate': {
      const len = Math.min(bytes.length - pos, 1 + d.int(256));
      out = new Uint8Array(bytes.length + len);
      out.set(bytes.subarray(0, pos + len));
      out.set(bytes.subarray(pos, pos + len), pos + len);
      out.set(bytes.subarray(pos + len), pos + 2 * len);
      return { bytes: out, what: `${len} bytes duplicated at ${pos}` };
    }
    case 'zero': {
      out = bytes.slice();
      out.fill(0, pos, Math.min(out.length, pos + 1 + d.int(64)));
      return { bytes: out, what: `bytes zeroed from ${pos}` };
    }
  }
}
