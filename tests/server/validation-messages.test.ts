import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';

// Validation errors read like the OpenAI API's: one sentence naming the field and the rule.
describe('validation messages', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer();
  });
  after(() => s.close());

  const user = { role: 'user', content: 'hi' };
  const cases: Array<[string, unknown, string, string | null]> = [
    [
      '/v1/chat/completions',
      { model: 'm', messages: [{ role: 'robot', content: 'hi' }] },
      'messages[0].role must be one of system, user, assistant, developer, tool (got "robot")',
      'messages[0].role',
    ],
    [
      '/v1/chat/completions',
      { model: 'm', messages: [{ role: 'user', content: [{ type: 'text' }] }] },
      'messages[0].content[0].text is required',
      'messages[0].content[0].text',
    ],
    ['/v1/chat/completions', { model: 'm', messages: [{ role: 'user' }] }, 'messages[0].content is required', 'messages[0].content'],
    ['/v1/chat/completions', { messages: [user] }, 'model is required', 'model'],
    ['/v1/chat/completions', { model: 'm', messages: [] }, 'messages must hold at least 1 item', 'messages'],
    ['/v1/chat/completions', { model: 5, messages: [user] }, 'model must be a string, not an integer', 'model'],
    [
      '/v1/chat/completions',
      { model: 'm', messages: [user], temperature: 'hot' },
      'temperature must be a number or null, not a string',
      'temperature',
    ],
    ['/v1/chat/completions', { model: 'm', messages: [user], temperature: 3 }, 'temperature must be at most 2', 'temperature'],
    ['/v1/chat/completions', { model: 'm', messages: [user], top_p: 0 }, 'top_p must be greater than 0', 'top_p'],
    [
      '/v1/chat/completions',
      { model: 'm', messages: [user], max_tokens: 1.5 },
      'max_tokens must be an integer or null, not a number',
      'max_tokens',
    ],
    ['/v1/chat/completions', { model: 'm', messages: [user], stop: [1] }, 'stop[0] must be a string, not an integer', 'stop[0]'],
    [
      '/v1/chat/completions',
      { model: 'm', messages: [user], stop: 7 },
      'stop must be a string, an array of strings or null, not an integer',
      'stop',
    ],
    ['/v1/chat/completions', { model: 'm', messages: [user], stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop must hold at most 4 items', 'stop'],
    [
      '/v1/chat/completions',
      { model: 'm', messages: [user], stream_options: { include_usage: 'yes' } },
      'stream_options.include_usage must be a boolean, not a string',
      'stream_options.include_usage',
    ],
    ['/v1/chat/completions', [1, 2], 'the request body must be an object, not an array', null],
    [
      '/v1/completions',
      { model: 'm', prompt: 5 },
      'prompt must be a string, an array of strings, an array of integers or an array of arrays of integers, not an integer',
      'prompt',
    ],
    ['/v1/completions', { model: 'm', prompt: [[1, 'a']] }, 'prompt[0][1] must be an integer, not a string', 'prompt[0][1]'],
    ['/v1/completions', { model: 'm', prompt: [] }, 'prompt must hold at least 1 item', 'prompt'],
    ['/v1/load_lora_adapter', { lora_name: 'Bad Name', lora_path: 'x' }, 'lora_name must match ^[a-z0-9][a-z0-9_.-]{0,63}$', 'lora_name'],
  ];
  for (const [url, body, message, param] of cases) {
    it(message, async () => {
      const r = await s.app.inject({ method: 'POST', url, payload: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
      assert.equal(r.statusCode, 400);
      assert.deepEqual(r.json().error, { message, type: 'invalid_request_error', code: 'invalid_request', param });
    });
  }
});
