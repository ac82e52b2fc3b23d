/**
 * The tool-call parser: any output, however its text is cut into deltas, splits into the same text
 * and calls (whitespace next to a call is the separator; a call cut before its name ends stays text).
 * The grammar itself is checked end to end in tests/server/tool-calls.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { renderToolCall, ToolCallParser, type ToolCallEvent } from '../../src/grammar/index.js';

const call = (name: string, args: object) => renderToolCall(name, JSON.stringify(args));

/** Events merged as a client would: text joined, each call's name and joined arguments. */
function merged(events: ToolCallEvent[]): { text: string; calls: Array<{ name: string; args: string }> } {
  const calls: Array<{ name: string; args: string }> = [];
  let text = '';
  for (const e of events) {
    if (e.type === 'text') text += e.text;
    else if (e.type === 'call') calls[e.index] = { name: e.name, args: '' };
    else calls[e.index]!.args += e.text;
  }
  return { text, calls };
}

function parse(chunks: string[]): ReturnType<typeof merged> {
  const p = new ToolCallParser();
  return merged([...chunks.flatMap((c) => p.push(c)), ...p.finish()]);
}

describe('tool-call parser', () => {
  const outputs: Array<[string, ReturnType<typeof merged>]> = [
    [call('order_status', { order_id: 'A-1' }), { text: '', calls: [{ name: 'order_status', args: '{"order_id":"A-1"}' }] }],
    [
      `${call('a', { s: '}\\"{', n: [1, { x: 2 }] })}\n${call('b', {})}`,
      {
        text: '',
        calls: [
          { name: 'a', args: '{"s":"}\\\\\\"{","n":[1,{"x":2}]}' },
          { name: 'b', args: '{}' },
        ],
      },
    ],
    [
      `Let me check. <tool_c${'x'}> ${call('f', { q: '<tool_call>' })}`,
      { text: 'Let me check. <tool_cx>', calls: [{ name: 'f', args: '{"q":"<tool_call>"}' }] },
    ],
    ['  just text  ', { text: '  just text  ', calls: [] }],
    ['<tool_call>\n{"name": "f", "argu', { text: '<tool_call>\n{"name": "f", "argu', calls: [] }],
    ['<tool_call>\n{"name": "f", "arguments": {"a":', { text: '', calls: [{ name: 'f', args: '{"a":' }] }],
  ];
  for (const [output, expected] of outputs) {
    it(`splits ${JSON.stringify(output).slice(0, 60)} the same way at every cut`, () => {
      assert.deepEqual(parse([output]), expected);
      for (let i = 0; i <= output.length; i++) assert.deepEqual(parse([output.slice(0, i), output.slice(i)]), expected, `cut at ${i}`);
      assert.deepEqual(parse([...output]), expected, 'one character at a time');
    });
  }
});
