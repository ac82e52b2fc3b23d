/**
 * XGrammar spells a string's `pattern` directly between the quotes of the JSON string, with no
 * escaping: a pattern that can match `"`, `\` or a control character would let the model write
 * invalid JSON. This rewrites a pattern so that everything it matches is a raw JSON string body
 * (`.` becomes "any character JSON allows unescaped"), or names the construct it cannot make safe.
 * minLength/maxLength become such a pattern too (XGrammar's own length rule lets control characters in).
 */

/**
 * Every character a JSON string may hold unescaped. A negated class: XGrammar 0.1.27 matches
 * positive classes reaching past U+007F loosely (stray continuation bytes, even control characters).
 */
export const JSON_STRING_CHAR = '[^\\x00-\\x1f"\\\\]';

/** A string of `min` to `max` unescaped JSON characters (max undefined: unbounded). */
export function lengthPattern(min: number, max: number | undefined): string {
  return `^${JSON_STRING_CHAR}{${min},${max ?? ''}}$`;
}

const unsafeCodePoint = (cp: number) => cp < 0x20 || cp === 0x22 || cp === 0x5c;

export type SafePattern = { pattern: string } | { problem: string };

export function jsonSafePattern(pattern: string): SafePattern {
  let out = '';
  let i = 0;
  const problem = (what: string): SafePattern => ({ problem: what });
  /** Reads an escape at i (pattern[i] === '\\'); returns its code point, a class shorthand, or a problem. */
  const readEscape = (): { cp: number } | { shorthand: string } | { problem: string } => {
    const e = pattern[i + 1];
    if (e === undefined) return { problem: 'a trailing backslash' };
    if ('sSWD'.includes(e)) return { problem: `\\${e} (it matches quotes or control characters)` };
    if ('nrtfv0'.includes(e)) return { problem: `\\${e} (control characters are escaped in JSON)` };
    if (/[1-9k]/.test(e)) return { problem: 'backreferences' };
    if (e === 'p' || e === 'P') return { problem: 'Unicode property classes' };
    if (e === 'b' || e === 'B') return { problem: 'word boundaries' };
    if (e === 'd' || e === 'w') {
      i += 2;
      return { shorthand: `\\${e}` };
    }
    const hex = e === 'x' ? /^[0-9a-fA-F]{2}/.exec(pattern.slice(i + 2)) : e === 'u' ? /^[0-9a-fA-F]{4}/.exec(pattern.slice(i + 2)) : null;
    if (e === 'x' || e === 'u') {
      if (!hex) return { problem: `a malformed \\${e} escape` };
      i += 2 + hex[0].length;
      return { cp: parseInt(hex[0], 16) };
    }
    if (/[a-zA-Z]/.test(e)) return { problem: `\\${e}` };
    i += 2;
    return { cp: e.codePointAt(0)! };
  };
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === '\\') {
      const start = i;
      const e = readEscape();
      if ('problem' in e) return e;
      if ('cp' in e && unsafeCodePoint(e.cp)) return problem(`${pattern.slice(start, i)} (a quote, backslash or control character)`);
      out += pattern.slice(start, i);
    } else if (c === '[') {
      const start = i++;
      if (pattern[i] === '^') return problem('negated character classes [^…] (they match quotes and control characters)');
      /** One class member: a code point, or null for \d / \w. */
      const member = (): number | null | { problem: string } => {
        if (pattern[i] !== '\\') {
          const cp = pattern.codePointAt(i)!;
          i += cp > 0xffff ? 2 : 1;
          return cp;
        }
        const e = readEscape();
        return 'problem' in e ? e : 'cp' in e ? e.cp : null;
      };
      while (pattern[i] !== ']') {
        if (i >= pattern.length) return problem('an unclosed [');
        const lo = member();
        if (lo !== null && typeof lo === 'object') return lo;
        let hi: number | null = lo;
        if (pattern[i] === '-' && pattern[i + 1] !== ']' && i + 1 < pattern.length) {
          i++;
          const end = member();
          if (end !== null && typeof end === 'object') return end;
          if (lo === null || end === null) return problem('a range with \\d or \\w at an end');
          hi = end;
        }
        if (lo !== null && hi !== null && (lo <= 0x1f || (lo <= 0x22 && hi >= 0x22) || (lo <= 0x5c && hi >= 0x5c)))
          return problem(`the class member ${pattern.slice(start, i)}… (it holds a quote, backslash or control character)`);
      }
      i++;
      out += pattern.slice(start, i);
    } else if (c === '(' && pattern[i + 1] === '?') {
      const kind = pattern.slice(i + 2, i + 4);
      if (/^(=|!|<=|<!)/.test(kind)) return problem('lookaround');
      if (kind[0] !== ':') return problem('group flags and named groups (use (?:…) or (…))');
      out += '(?:';
      i += 3;
    } else if (c === '.') {
      out += JSON_STRING_CHAR;
      i++;
    } else if (c === '"' || unsafeCodePoint(c.codePointAt(0)!)) {
      return problem('a quote or control character');
    } else {
      out += c;
      i++;
    }
  }
  return { pattern: out };
}
