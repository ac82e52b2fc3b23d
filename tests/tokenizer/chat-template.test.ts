import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { templateInput, toolUse } from '../../src/server/tool-calls.js';
import { writeRandomModel } from '../../src/testing/index.js';
import { Tokenizer } from '../../src/tokenizer/index.js';
import { tempDir } from '../helpers/adapters.js';

describe('chat messages reach the model folder’s template', () => {
  it("a message's name (OpenAI's field) is passed to templates that render it", async () => {
    const tiny = writeRandomModel(join(tempDir(), 'named'), { family: 'llama', seed: 1 });
    const file = join(tiny.dir, 'tokenizer_config.json');
    const config = JSON.parse(readFileSync(file, 'utf8'));
    config.chat_template =
      '{% for m in messages %}<|im_start|>{{ m.role }}{% if m.name %} ({{ m.name }}){% endif %}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n';
    writeFileSync(file, JSON.stringify(config));
    const tokenizer = await Tokenizer.load(tiny.dir);
    const wire = [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'hi ' },
          { type: 'text', text: 'there' },
        ],
        name: 'kim',
      },
      { role: 'user', content: 'again' },
    ];
    const rendered = tokenizer.renderChat(templateInput(tokenizer.chatTemplate, wire, null).messages);
    assert.match(rendered, /<\|im_start\|>user \(kim\)\s*hi there<\|im_end\|>/);
    assert.match(rendered, /<\|im_start\|>user\s*again<\|im_end\|>/, 'a message without a name renders without one');
  });

  const tools = [{ type: 'function' as const, function: { name: 'order_status', parameters: { type: 'object' } } }];
  const conversation = [
    { role: 'user', content: 'where is A-1?' },
    {
      role: 'assistant',
      content: null,
      tool_calls: [{ id: 'call_1', type: 'function' as const, function: { name: 'order_status', arguments: '{"order_id":"A-1"}' } }],
    },
    { role: 'tool', tool_call_id: 'call_1', content: 'shipped' },
  ];

  it('a template that knows <tool_call> gets `tools` and the calls as transformers passes them (arguments as objects)', async () => {
    const tiny = writeRandomModel(join(tempDir(), 'hermes'), { family: 'llama', seed: 1 });
    const file = join(tiny.dir, 'tokenizer_config.json');
    const config = JSON.parse(readFileSync(file, 'utf8'));
    config.chat_template =
      '{% if tools %}<|im_start|>system\nTOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}<|im_end|>\n{% endif %}' +
      '{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.content %}{{ m.content }}{% endif %}' +
      '{% for c in m.tool_calls or [] %}<tool_call>\n{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}\n</tool_call>{% endfor %}' +
      '<|im_end|>\n{% endfor %}<|im_start|>assistant\n';
    writeFileSync(file, JSON.stringify(config));
    const tokenizer = await Tokenizer.load(tiny.dir);
    const render = (tool_choice: 'auto' | 'none') => {
      const input = templateInput(tokenizer.chatTemplate, conversation, toolUse({ messages: conversation, tools, tool_choice }));
      return tokenizer.renderChat(input.messages, true, input.tools);
    };
    const rendered = render('auto');
    assert.match(rendered, /TOOLS:order_status;/);
    assert.match(rendered, /<tool_call>\n\{"name": "order_status", "arguments": \{"order_id": ?"A-1"\}\}\n<\/tool_call>/);
    assert.match(rendered, /<\|im_start\|>tool\nshipped/);
    assert.doesNotMatch(render('none'), /TOOLS:/, 'tool_choice none leaves the tools out of the prompt');
  });

  it('any other template gets the generic format: tools in the system message, calls in the text, results as <tool_response>', async () => {
    const tiny = writeRandomModel(join(tempDir(), 'chatml'), { family: 'llama', seed: 1 });
    const tokenizer = await Tokenizer.load(tiny.dir);
    const { messages, tools: passed } = templateInput(tokenizer.chatTemplate, conversation, toolUse({ messages: conversation, tools }));
    assert.equal(passed, undefined);
    assert.equal(messages[0]!.role, 'system');
    assert.match(messages[0]!.content, /<tools>\n\{"type":"function","function":\{"name":"order_status"/);
    assert.equal(messages[2]!.content, '<tool_call>\n{"name": "order_status", "arguments": {"order_id":"A-1"}}\n</tool_call>');
    assert.deepEqual(messages[3], { role: 'user', content: '<tool_response>\nshipped\n</tool_response>' });
  });
});
