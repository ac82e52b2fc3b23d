/**
 * Tool calling through clients nobody here wrote, on a real socket: the official openai client
 * (create with tools, runTools with zodFunction, streaming), LangChain's ChatOpenAI.bindTools with
 * tool_choice, and the Vercel AI SDK's generateText with tools and toolChoice 'required' over
 * @ai-sdk/openai-compatible. Each call's arguments are checked against the tool's schema.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { zodFunction } from 'openai/helpers/zod';
import { z } from 'zod';
import { ChatOpenAI } from '@langchain/openai';
import { tool as langchainTool } from '@langchain/core/tools';
import { generateText, tool as aiTool } from 'ai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { startTestServer, type TestServer } from '../helpers/server.js';

const OrderStatus = z.object({ order_id: z.string().regex(/^[A-Z]-\d{3}$/) });
const Weather = z.object({ city: z.enum(['Seoul', 'Busan']), days: z.number().int().min(1).max(7) });

describe('tool calling through the openai, LangChain and AI SDK clients', () => {
  let s: TestServer;
  let baseURL: string;
  let client: OpenAI;
  before(async () => {
    s = await startTestServer({ maxTokens: 128 }, { model: { maxPositions: 2048 } });
    await s.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = s.app.server.address() as { port: number };
    baseURL = `http://127.0.0.1:${port}/v1`;
    client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0 });
  });
  after(() => s.close());

  const messages = [{ role: 'user' as const, content: 'where is order A-123?' }];
  const orderTool = {
    type: 'function' as const,
    function: { name: 'order_status', description: 'Look up an order', parameters: z.toJSONSchema(OrderStatus) as Record<string, unknown> },
  };

  it('openai: chat.completions.create with tools returns tool_calls whose arguments parse', async () => {
    const r = await client.chat.completions.create({
      model: s.serving.baseId,
      messages,
      tools: [orderTool],
      tool_choice: 'required',
      parallel_tool_calls: false,
      temperature: 0,
    });
    const [choice] = r.choices;
    assert.equal(choice!.finish_reason, 'tool_calls');
    const call = choice!.message.tool_calls![0]!;
    assert.equal(call.type, 'function');
    if (call.type !== 'function') return;
    assert.equal(call.function.name, 'order_status');
    OrderStatus.parse(JSON.parse(call.function.arguments));
  });

  it('openai: streaming accumulates into the same call (chat.completions.stream)', async () => {
    const body = {
      model: s.serving.baseId,
      messages,
      tools: [orderTool],
      tool_choice: 'required' as const,
      parallel_tool_calls: false,
      temperature: 0,
    };
    const whole = await client.chat.completions.create(body);
    const final = await client.chat.completions.stream(body).finalChatCompletion();
    const [a, b] = [whole.choices[0]!.message.tool_calls![0]!, final.choices[0]!.message.tool_calls![0]!];
    assert.ok(a.type === 'function' && b.type === 'function');
    assert.deepEqual(b.function, a.function);
    assert.equal(final.choices[0]!.finish_reason, 'tool_calls');
  });

  it('openai: runTools with zodFunction calls the function with parsed, valid arguments', async () => {
    const seen: Array<z.infer<typeof Weather>> = [];
    const runner = client.chat.completions.runTools({
      model: s.serving.baseId,
      messages: [{ role: 'user', content: 'weather in Seoul?' }],
      tools: [zodFunction({ name: 'weather', parameters: Weather, function: (args) => (seen.push(args), { sunny: true }) })],
      tool_choice: { type: 'function', function: { name: 'weather' } },
      // A random model never chooses to stop calling: one call per answer.
      parallel_tool_calls: false,
      temperature: 1,
      seed: 3,
    });
    await runner.done();
    assert.equal(seen.length, 1);
    assert.deepEqual(Weather.parse(seen[0]), seen[0]);
    // The runner recorded the function's result as a tool message (a named choice: it stops after the call).
    assert.ok(runner.messages.some((m) => m.role === 'tool'));
  });

  it('LangChain: ChatOpenAI.bindTools with tool_choice gives tool_calls with parsed args', async () => {
    const model = new ChatOpenAI({ model: s.serving.baseId, apiKey: 'unused', temperature: 0, maxRetries: 0, configuration: { baseURL } });
    const orderStatus = langchainTool(async () => 'shipped', {
      name: 'order_status',
      description: 'Look up an order',
      schema: OrderStatus,
    });
    const weather = langchainTool(async () => 'sunny', { name: 'weather', description: 'The forecast', schema: Weather });
    for (const tool_choice of ['order_status', 'required'] as const) {
      const reply = await model.bindTools([orderStatus, weather], { tool_choice, parallel_tool_calls: false }).invoke('where is my order?');
      assert.equal(reply.tool_calls?.length, 1, JSON.stringify(reply));
      const call = reply.tool_calls![0]!;
      if (tool_choice === 'order_status') assert.equal(call.name, 'order_status');
      (call.name === 'weather' ? Weather : OrderStatus).parse(call.args);
      assert.match(call.id ?? '', /^call_/);
    }
  });

  it("AI SDK: generateText with tools and toolChoice 'required' runs the tool on valid input", async () => {
    const provider = createOpenAICompatible({ name: 'loraserve', baseURL, apiKey: 'unused' });
    const inputs: unknown[] = [];
    const result = await generateText({
      model: provider(s.serving.baseId),
      prompt: 'weather in Busan?',
      tools: {
        weather: aiTool({ description: 'The forecast', inputSchema: Weather, execute: async (input) => (inputs.push(input), 'sunny') }),
      },
      toolChoice: 'required',
      // Extra body fields go through the provider's options; a random model never chooses to stop calling.
      providerOptions: { loraserve: { parallel_tool_calls: false } },
      temperature: 0,
      maxRetries: 0,
    });
    assert.equal(result.finishReason, 'tool-calls');
    assert.equal(result.toolCalls.length >= 1, true);
    for (const call of result.toolCalls) {
      assert.equal(call.toolName, 'weather');
      Weather.parse(call.input);
    }
    assert.equal(inputs.length, result.toolCalls.length);
    assert.deepEqual(
      result.toolResults.map((r) => r.output),
      inputs.map(() => 'sunny'),
    );
  });
});
