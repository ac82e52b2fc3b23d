/**
 * Tool calls in the output, in the Hermes syntax that Qwen2.5 and Hermes templates teach and that
 * loraserve's generic tool prompt describes:
 *
 *     <tool_call>
 *     {"name": "order_status", "arguments": {"order_id":"A-1"}}
 *     </tool_call>
 *
 * The grammar is an XGrammar structural tag: one tag per function whose content is that function's
 * `parameters` schema as compact JSON. `required` (and a named function) makes the whole output
 * calls; `auto` leaves text free until the opening tag, from which the call is constrained to its end.
 */
import type { XGrammar } from './xgrammar-module.js';

/** One function a request offers, by name and parameters schema. */
export interface ToolFunction {
  name: string;
  parameters: object;
  /** The request field the schema came from (`tools[2].function.parameters`), for the 400 that refuses it. */
  param: string;
}

export interface ToolCallGrammar {
  functions: ToolFunction[];
  /** `required`: calls only, at least one; `auto`: free text, and calls from their opening tag on. */
  mode: 'required' | 'auto';
  /** More than one call in an answer. */
  parallel: boolean;
}

/** The call syntax's fixed parts: a call is `open + name + afterName + arguments + close`. */
export const TOOL_CALL_SYNTAX = {
  open: '<tool_call>\n{"name": "',
  afterName: '", "arguments": ',
  close: '}\n</tool_call>',
  /** What starts a call in free text (auto). */
  trigger: '<tool_call>',
  /** Between calls when the output is calls only. */
  separator: '\n',
} as const;

/** A call as the model writes it (for prompts that show earlier calls). */
export function renderToolCall(name: string, argumentsJson: string): string {
  const s = TOOL_CALL_SYNTAX;
  return `${s.open}${name}${s.afterName}${argumentsJson}${s.close}`;
}

/** The structural tag for a request's functions; `ebnf[i]` is function i's parameters as a compact JSON grammar. */
export function toolCallTag(grammar: ToolCallGrammar, ebnf: readonly string[]): XGrammar.StructuralTag {
  const s = TOOL_CALL_SYNTAX;
  const tags: XGrammar.TagFormat[] = grammar.functions.map((f, i) => ({
    type: 'tag',
    begin: `${s.open}${f.name}${s.afterName}`,
    content: { type: 'grammar', grammar: ebnf[i]! },
    end: s.close,
  }));
  const stop_after_first = !grammar.parallel;
  return {
    type: 'structural_tag',
    format:
      grammar.mode === 'required'
        ? { type: 'tags_with_separator', tags, separator: s.separator, at_least_one: true, stop_after_first }
        : { type: 'triggered_tags', triggers: [s.trigger], tags, at_least_one: false, stop_after_first },
  };
}

export type ToolCallEvent =
  | { type: 'text'; text: string }
  | { type: 'call'; index: number; name: string }
  | { type: 'arguments'; index: number; text: string };

/**
 * Splits output text, as it streams, into plain text and calls: a call's name as soon as it is
 * written, then its arguments in fragments as they come (concatenated, the arguments' JSON). Text
 * that could be the start of an opening tag is held until it is known not to be. Whitespace between
 * or around calls is dropped (it is the separator); text of an answer without calls is kept whole.
 */
export class ToolCallParser {
  private state: 'text' | 'name' | 'arguments' | 'close' = 'text';
  private held = '';
  private space = '';
  private calls = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private closeLeft = 0;

  push(text: string): ToolCallEvent[] {
    const out: ToolCallEvent[] = [];
    this.held += text;
    while (this.step(out));
    return out;
  }

  /** The end of the output: what was held back (a call cut off before its name ends is text). */
  finish(): ToolCallEvent[] {
    const out: ToolCallEvent[] = [];
    if (this.state === 'name') this.text(out, TOOL_CALL_SYNTAX.open + this.held);
    else if (this.state === 'text') this.text(out, this.held);
    this.held = '';
    if (this.space && this.calls === 0) out.push({ type: 'text', text: this.space });
    this.space = '';
    return out;
  }

  private step(out: ToolCallEvent[]): boolean {
    const s = TOOL_CALL_SYNTAX;
    switch (this.state) {
      case 'text': {
        const at = this.held.indexOf(s.open);
        if (at >= 0) {
          this.text(out, this.held.slice(0, at));
          this.held = this.held.slice(at + s.open.length);
          this.state = 'name';
          return true;
        }
        const keep = heldPrefix(this.held, s.open);
        this.text(out, this.held.slice(0, this.held.length - keep));
        this.held = this.held.slice(this.held.length - keep);
        return false;
      }
      case 'name': {
        const at = this.held.indexOf(s.afterName);
        if (at < 0) return false;
        out.push({ type: 'call', index: this.calls, name: this.held.slice(0, at) });
        this.held = this.held.slice(at + s.afterName.length);
        this.state = 'arguments';
        this.depth = 0;
        return true;
      }
      case 'arguments': {
        const end = this.scanArguments();
        const fragment = end < 0 ? this.held : this.held.slice(0, end);
        if (fragment) out.push({ type: 'arguments', index: this.calls, text: fragment });
        this.held = end < 0 ? '' : this.held.slice(end);
        if (end < 0) return false;
        this.state = 'close';
        this.closeLeft = s.close.length;
        return true;
      }
      case 'close': {
        const n = Math.min(this.closeLeft, this.held.length);
        this.held = this.held.slice(n);
        this.closeLeft -= n;
        if (this.closeLeft > 0) return false;
        this.state = 'text';
        this.calls++;
        this.space = '';
        return true;
      }
    }
  }

  /** Where the arguments object in `held` ends (past its closing brace), or -1 while it is open. */
  private scanArguments(): number {
    for (let i = 0; i < this.held.length; i++) {
      const ch = this.held[i]!;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (ch === '\\') this.escaped = true;
        else if (ch === '"') this.inString = false;
      } else if (ch === '"') this.inString = true;
      else if (ch === '{' || ch === '[') this.depth++;
      else if ((ch === '}' || ch === ']') && --this.depth === 0) return i + 1;
    }
    return -1;
  }

  /** Text goes out up to its last non-space; trailing whitespace waits (next to a call it is the separator). */
  private text(out: ToolCallEvent[], text: string): void {
    const pending = this.space + text;
    const end = pending.trimEnd().length;
    if (end > 0) out.push({ type: 'text', text: pending.slice(0, end) });
    this.space = pending.slice(end);
  }
}

/** Length of the longest end of `text` that begins `marker` (text that may still turn into it). */
function heldPrefix(text: string, marker: string): number {
  for (let n = Math.min(text.length, marker.length - 1); n > 0; n--) if (marker.startsWith(text.slice(text.length - n))) return n;
  return 0;
}
