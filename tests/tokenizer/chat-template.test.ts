import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { templateInput } from '../../src/server/tool-calls.js';
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
});
