import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EmptyPromptError, InvalidRequestError, PromptTooLongError, UnsupportedParameterError } from '../../src/errors.js';
import { generateRequest, requestError } from '../../src/server/completion-request.js';

const limits = { maxPromptTokens: 100, maxTokens: 16, maxChoices: 4, maxContext: 8 };

describe('completion request: the server speaks its fields, the engine its own', () => {
  it("a prompt that leaves the model's context no room is refused on the endpoint's prompt field", () => {
    for (const param of ['prompt', 'messages'] as const)
      assert.throws(
        () => generateRequest({ model: 'm' }, new Array(8).fill(5), limits, param),
        (err: unknown) => {
          assert.ok(err instanceof PromptTooLongError);
          assert.equal(err.param, param);
          assert.match(err.message, /context holds 8/);
          return true;
        },
      );
    assert.equal(generateRequest({ model: 'm' }, new Array(7).fill(5), limits, 'prompt').promptTokens.length, 7);
  });

  it('min_tokens and ignore_eos beside a grammar are refused before the grammar is compiled', () => {
    const json = { model: 'm', response_format: { type: 'json_object' as const } };
    assert.throws(() => generateRequest({ ...json, min_tokens: 2 }, [5], limits, 'messages'), {
      code: 'unsupported_parameter',
      param: 'min_tokens',
    });
    assert.throws(() => generateRequest({ ...json, ignore_eos: true }, [5], limits, 'messages'), {
      code: 'unsupported_parameter',
      param: 'ignore_eos',
    });
    assert.equal(
      generateRequest({ model: 'm', response_format: { type: 'text' }, ignore_eos: true }, [5], limits, 'messages').ignoreEos,
      true,
    );
  });

  it("maps the engine's GenerateRequest fields to the request's, keeping class, code and message", () => {
    const cases: Array<[Error, 'messages' | 'prompt', string]> = [
      [new PromptTooLongError('too long', { param: 'promptTokens' }), 'prompt', 'prompt'],
      [new EmptyPromptError('empty', { param: 'promptTokens' }), 'messages', 'messages'],
      [new UnsupportedParameterError('no', { param: 'minTokens' }), 'messages', 'min_tokens'],
      [new UnsupportedParameterError('no', { param: 'ignoreEos' }), 'prompt', 'ignore_eos'],
      [new InvalidRequestError('adapter mix: slot 9 is outside 1..3', { param: 'adapters' }), 'messages', 'model'],
    ];
    for (const [engineError, promptParam, field] of cases) {
      const mapped = requestError(engineError, promptParam);
      assert.ok(mapped instanceof engineError.constructor, `${engineError.constructor.name} keeps its class`);
      assert.deepEqual(
        { param: (mapped as PromptTooLongError).param, code: (mapped as PromptTooLongError).code, message: (mapped as Error).message },
        { param: field, code: (engineError as PromptTooLongError).code, message: engineError.message },
      );
    }
    const plain = new Error('boom');
    assert.equal(requestError(plain, 'prompt'), plain);
  });
});
