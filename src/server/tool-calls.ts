/**
 * Tool calling as OpenAI clients send it: the request's `tools`, `tool_choice` and
 * `parallel_tool_calls` checked and turned into a grammar (see grammar/tool-calls.ts); the messages,
 * with earlier calls and their results, rendered for the chat template; and the output split into
 * `content` and `tool_calls`, whole or as stream deltas.
 *
 * A template that knows the Hermes syntax (it mentions `<tool_call>`, as Qwen2.5's and Hermes' do)
 * gets `tools` and the messages as transformers' apply_chat_template(tools=...) passes them. Any
 * other template gets the generic format: the tools listed in the system message as Qwen2.5's
 * template lists them, earlier calls written into the assistant's text in the same syntax, and tool
 * results as user turns in `<tool_response>` tags.
 */
import { randomBytes } from 'node:crypto';
import type { FinishReason } from '../engine/index.js';
import { InvalidRequestError, UnsupportedParameterError } from '../errors.js';
import { renderToolCall, TOOL_CALL_SYNTAX, ToolCallParser, type ToolCallEvent, type ToolCallGrammar } from '../grammar/index.js';
import type { ChatMessage, ChatTool, Tokenizer } from '../tokenizer/index.js';
import { wireFinish } from './wire-shapes.js';

interface WireToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A chat message as the wire carries it (see schemas/openai.ts). */
export interface WireMessage {
  role: string;
  content?: string | ReadonlyArray<{ type: string; text?: string }> | null;
  name?: string;
  tool_calls?: WireToolCall[];
  tool_call_id?: string;
}

type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };

/** The fields of a chat body tool calling reads. */
export interface ToolsBody {
  messages: WireMessage[];
  tools?: ChatTool[] | null;
  tool_choice?: ToolChoice | null;
  parallel_tool_calls?: boolean | null;
  functions?: unknown;
  function_call?: unknown;
  response_format?: { type: string } | null;
  min_tokens?: number | null;
  ignore_eos?: boolean | null;
}

/** A request's tools: what the prompt lists, and the grammar its answer is decoded under (null for `none`). */
export interface ToolUse {
  tools: ChatTool[];
  grammar: ToolCallGrammar | null;
}

/** Parameters of a function that declares none: it takes no arguments. */
const NO_PARAMETERS = { type: 'object', properties: {}, additionalProperties: false };

/** The request's tool use, or null without tools; 400s for what cannot be served as asked. */
export function toolUse(body: ToolsBody): ToolUse | null {
  if (body.functions !== undefined) throw new UnsupportedParameterError('functions is deprecated; use tools', { param: 'functions' });
  if (body.function_call !== undefined)
    throw new UnsupportedParameterError('function_call is deprecated; use tool_choice', { param: 'function_call' });
  const tools = body.tools ?? [];
  if (tools.length === 0) {
    for (const param of ['tool_choice', 'parallel_tool_calls'] as const)
      if (body[param] !== undefined && body[param] !== null) throw new InvalidRequestError(`${param} needs tools`, { param });
    return null;
  }
  const seen = new Set<string>();
  tools.forEach((t, i) => {
    if (seen.has(t.function.name))
      throw new InvalidRequestError(`function name "${t.function.name}" appears twice in tools`, { param: `tools[${i}].function.name` });
    seen.add(t.function.name);
  });
  const choice = body.tool_choice ?? 'auto';
  if (choice === 'none') return { tools, grammar: null };
  const offered =
    typeof choice === 'object'
      ? tools.filter((t) => t.function.name === choice.function.name).map((t) => ({ t, i: tools.indexOf(t) }))
      : tools.map((t, i) => ({ t, i }));
  if (offered.length === 0)
    throw new InvalidRequestError(
      `tool_choice names function "${(choice as { function: { name: string } }).function.name}", which tools do not hold`,
      {
        param: 'tool_choice',
      },
    );
  if (body.response_format && body.response_format.type !== 'text')
    throw new UnsupportedParameterError('response_format cannot be combined with tool calls; use tool_choice "none" or drop one', {
      param: 'response_format',
    });
  for (const param of ['min_tokens', 'ignore_eos'] as const)
    if (body[param])
      throw new UnsupportedParameterError(`${param} cannot be combined with tool calls (their grammar decides the end)`, { param });
  return {
    tools,
    grammar: {
      functions: offered.map(({ t, i }) => ({
        name: t.function.name,
        parameters: t.function.parameters ?? NO_PARAMETERS,
        param: `tools[${i}].function.parameters`,
      })),
      mode: choice === 'auto' ? 'auto' : 'required',
      parallel: body.parallel_tool_calls ?? true,
    },
  };
}

/** The prompt's tokens: messages (with earlier calls and results) and the tools, through the chat template. */
export function chatPrompt(tokenizer: Tokenizer, body: ToolsBody, use: ToolUse | null): number[] {
  const { messages, tools } = templateInput(tokenizer.chatTemplate, body.messages, use);
  return tokenizer.applyChatTemplate(messages, tools);
}

/** What the template renders: the messages, and `tools` for a template that knows the call syntax (else they go into the messages). */
export function templateInput(template: string, wire: WireMessage[], use: ToolUse | null): { messages: ChatMessage[]; tools?: ChatTool[] } {
  const messages = wire.map(checkMessage);
  // `none` leaves the tools out of the prompt, so the model is not invited to write calls no one parses.
  const offered = use?.grammar ? use.tools : undefined;
  if (template.includes(TOOL_CALL_SYNTAX.trigger)) return { messages, ...(offered ? { tools: offered } : {}) };
  return { messages: genericMessages(messages, offered) };
}

/** One wire message as templates read it; 400s for a message that breaks OpenAI's rules for its role. */
function checkMessage(m: WireMessage, i: number): ChatMessage {
  const at = `messages[${i}]`;
  if (m.tool_calls && m.role !== 'assistant')
    throw new InvalidRequestError(`${at}.tool_calls is only for assistant messages`, { param: `${at}.tool_calls` });
  if (m.role === 'tool' && m.tool_call_id === undefined)
    throw new InvalidRequestError(`${at}.tool_call_id is required in a tool message`, { param: `${at}.tool_call_id` });
  if (m.tool_call_id !== undefined && m.role !== 'tool')
    throw new InvalidRequestError(`${at}.tool_call_id is only for tool messages`, { param: `${at}.tool_call_id` });
  if ((m.content === undefined || m.content === null) && !m.tool_calls?.length)
    throw new InvalidRequestError(`${at}.content is required`, { param: `${at}.content` });
  return {
    role: m.role,
    content: messageText(m.content ?? '', at),
    ...(m.name === undefined ? {} : { name: m.name }),
    ...(m.tool_calls
      ? {
          tool_calls: m.tool_calls.map((c, j) => ({
            ...c,
            function: { ...c.function, arguments: callArguments(c, `${at}.tool_calls[${j}]`) },
          })),
        }
      : {}),
    ...(m.tool_call_id === undefined ? {} : { tool_call_id: m.tool_call_id }),
  };
}

/** A message's text: its text parts joined; a part of any other type is refused (a text-only model). */
export function messageText(content: string | ReadonlyArray<{ type: string; text?: string }>, at: string): string {
  if (typeof content === 'string') return content;
  return content
    .map((p, j) => {
      const param = `${at}.content[${j}]`;
      if (p.type !== 'text')
        throw new InvalidRequestError(`this model takes text only: a ${JSON.stringify(p.type)} content part cannot be read`, {
          param: `${param}.type`,
        });
      if (typeof p.text !== 'string') throw new InvalidRequestError(`${param}.text is required`, { param: `${param}.text` });
      return p.text;
    })
    .join('');
}

/** An earlier call's arguments as an object (templates write them with tojson). */
function callArguments(call: WireToolCall, at: string): unknown {
  try {
    return JSON.parse(call.function.arguments);
  } catch {
    throw new InvalidRequestError(`${at}.function.arguments is not JSON`, { param: `${at}.function.arguments` });
  }
}

/**
 * The generic format's instructions: Qwen2.5's layout (tools one per line in <tools> tags, the call
 * syntax shown once), its prose cut short, since a small model's context is short.
 */
function genericToolPrompt(tools: ChatTool[]): string {
  return [
    '# Tools',
    '<tools>',
    ...tools.map((t) => JSON.stringify(t)),
    '</tools>',
    'To call a function, write:',
    '<tool_call>',
    '{"name": <function-name>, "arguments": <args-json-object>}',
    '</tool_call>',
  ].join('\n');
}

/** Messages in the generic format, for templates that know only roles and text. */
function genericMessages(messages: ChatMessage[], tools: ChatTool[] | undefined): ChatMessage[] {
  const out = messages.map(({ tool_calls, tool_call_id: _, ...m }): ChatMessage => {
    if (m.role === 'tool') return { role: 'user', content: `<tool_response>\n${m.content}\n</tool_response>` };
    if (!tool_calls?.length) return m;
    const calls = tool_calls.map((c) => renderToolCall(c.function.name, JSON.stringify(c.function.arguments)));
    return { ...m, content: [m.content, ...calls].filter(Boolean).join('\n') };
  });
  if (!tools) return out;
  const prompt = genericToolPrompt(tools);
  const first = out[0];
  if (first && (first.role === 'system' || first.role === 'developer'))
    return [{ ...first, content: `${first.content}\n\n${prompt}` }, ...out.slice(1)];
  return [{ role: 'system', content: prompt }, ...out];
}

const callId = () => `call_${randomBytes(12).toString('hex')}`;

/** A whole answer with tools: its text and calls as OpenAI's message, and finish_reason "tool_calls" when it called. */
export function toolCallChoice(index: number, text: string, finish: FinishReason | null, logprobs: unknown): Record<string, unknown> {
  const parser = new ToolCallParser();
  const events = [...parser.push(text), ...parser.finish()];
  const content = events.flatMap((e) => (e.type === 'text' ? [e.text] : [])).join('');
  const calls = gather(events, new Map());
  return {
    index,
    message: {
      role: 'assistant',
      content: calls.length ? content || null : content,
      ...(calls.length
        ? { tool_calls: calls.map((c) => ({ ...c, function: { name: c.function.name!, arguments: c.function.arguments ?? '' } })) }
        : {}),
    },
    finish_reason: callsFinish(finish, calls.length > 0),
    logprobs,
  };
}

/** One streamed choice with tools: text deltas in, OpenAI chunks with `content` and `tool_calls` deltas out. */
export class ToolCallStream {
  private readonly parser = new ToolCallParser();
  private readonly ids = new Map<number, string>();

  /** The chunks for one text delta (null text: the end, with `finish`); a delta held back entirely gives none. */
  chunks(index: number, text: string | null, first: boolean, finish: FinishReason | null, logprobs: unknown): Record<string, unknown>[] {
    const events = text === null ? this.parser.finish() : this.parser.push(text);
    const content = events.flatMap((e) => (e.type === 'text' ? [e.text] : [])).join('');
    const calls = gather(events, this.ids);
    const delta = {
      ...(first ? { role: 'assistant' } : {}),
      ...(content || (first && text !== null) ? { content } : {}),
      ...(calls.length ? { tool_calls: calls } : {}),
    };
    const chunk = (d: Record<string, unknown>, f: FinishReason | null) => ({ index, delta: d, finish_reason: f, logprobs });
    if (finish !== null) {
      const end = { index, delta: {}, finish_reason: callsFinish(finish, this.ids.size > 0), logprobs: null };
      return Object.keys(delta).length ? [chunk(delta, null), end] : [end];
    }
    return Object.keys(delta).length || logprobs ? [chunk(delta, null)] : [];
  }
}

interface CallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function: { name?: string; arguments?: string };
}

/** Parser events as call deltas: a call's first carries its id and name, fragments of one call in a row are joined. */
function gather(events: ToolCallEvent[], ids: Map<number, string>): CallDelta[] {
  const out: CallDelta[] = [];
  for (const e of events) {
    if (e.type === 'call') {
      const id = callId();
      ids.set(e.index, id);
      out.push({ index: e.index, id, type: 'function', function: { name: e.name, arguments: '' } });
    } else if (e.type === 'arguments') {
      const last = out.at(-1);
      if (last?.index === e.index) last.function.arguments = (last.function.arguments ?? '') + e.text;
      else out.push({ index: e.index, function: { arguments: e.text } });
    }
  }
  return out;
}

function callsFinish(finish: FinishReason | null, called: boolean): string | null {
  const f = wireFinish(finish);
  return f === 'stop' && called ? 'tool_calls' : f;
}
