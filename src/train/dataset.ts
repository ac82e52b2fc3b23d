/**
 * Training data as JSONL, in the seed tutorial's two formats and plain text:
 *   instruction (Alpaca): {"instruction": "...", "input": "...", "output": "..."}
 *   chat:                 {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", ...}]}
 *   text:                 {"text": "..."}
 * A conversation is rendered with the model's chat template and the loss covers the assistant turns
 * (and their end-of-turn token) only; a text row is language modelling, every token a target (the
 * datasets convention TRL's SFTTrainer follows for a "text" field). A bad line is reported by its number.
 */
import { readFileSync } from 'node:fs';
import { DatasetError } from '../errors.js';
import type { ChatMessage, Tokenizer } from '../tokenizer/index.js';

export interface Example {
  /** 1-based line of the JSONL file it came from. */
  line: number;
  tokens: number[];
  /** 1 where the token is a target (predicted from the one before it). */
  lossMask: Uint8Array;
}

const ROLES = new Set(['system', 'user', 'assistant']);

export type TrainingRow = { messages: ChatMessage[] } | { text: string };

export function parseLine(line: string, where: string): TrainingRow {
  let row: unknown;
  try {
    row = JSON.parse(line);
  } catch (cause) {
    throw new DatasetError(`${where}: not valid JSON (${(cause as Error).message})`, { cause });
  }
  if (row === null || typeof row !== 'object' || Array.isArray(row)) throw new DatasetError(`${where}: expected a JSON object`);
  const r = row as Record<string, unknown>;
  if (Array.isArray(r.messages)) {
    const messages = r.messages.map((m, i) => {
      const msg = m as Record<string, unknown>;
      if (!msg || typeof msg.content !== 'string' || typeof msg.role !== 'string' || !ROLES.has(msg.role)) {
        throw new DatasetError(`${where}: messages[${i}] needs a role (system, user, assistant) and string content`);
      }
      return { role: msg.role, content: msg.content };
    });
    if (!messages.some((m) => m.role === 'assistant')) throw new DatasetError(`${where}: no assistant message to learn from`);
    return { messages };
  }
  if (typeof r.instruction === 'string' && typeof r.output === 'string') {
    if (r.input !== undefined && typeof r.input !== 'string') throw new DatasetError(`${where}: "input" must be a string`);
    const user = r.input ? `${r.instruction}\n\n${r.input}` : r.instruction;
    return {
      messages: [
        { role: 'user', content: user },
        { role: 'assistant', content: r.output },
      ],
    };
  }
  if (typeof r.text === 'string') {
    if (!r.text) throw new DatasetError(`${where}: "text" is empty`);
    return { text: r.text };
  }
  throw new DatasetError(`${where}: expected "messages" (chat), "instruction" and "output" (Alpaca) or "text"`);
}

/** Tokens of a conversation and the mask of its assistant tokens. */
export function encodeConversation(tokenizer: Tokenizer, messages: ChatMessage[]): Omit<Example, 'line'> {
  const full = tokenizer.encode(tokenizer.renderChat(messages, false));
  const mask = new Uint8Array(full.length);
  for (let i = 0; i < messages.length; i++) {
    if (messages[i]!.role !== 'assistant') continue;
    const start = tokenizer.encode(tokenizer.renderChat(messages.slice(0, i), true)).length;
    const end = tokenizer.encode(tokenizer.renderChat(messages.slice(0, i + 1), false)).length;
    for (let t = start; t < end; t++) mask[t] = 1;
  }
  return { tokens: full, lossMask: mask };
}

/** A text row's tokens as a raw prompt reads (BOS where the tokenizer adds one), ended by EOS; every token after the first is a target. */
function encodeText(tokenizer: Tokenizer, text: string): Omit<Example, 'line'> {
  const eos = tokenizer.eosTokenId;
  const tokens = [...tokenizer.encodePrompt(text), ...(eos === null ? [] : [eos])];
  const lossMask = new Uint8Array(tokens.length).fill(1);
  lossMask[0] = 0;
  return { tokens, lossMask };
}

export function loadDataset(path: string, tokenizer: Tokenizer, maxTokens: number): Example[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new DatasetError(`cannot read ${path}`, { cause });
  }
  const examples: Example[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    const where = `${path}:${i + 1}`;
    const row = parseLine(line, where);
    const encoded = 'text' in row ? encodeText(tokenizer, row.text) : encodeConversation(tokenizer, row.messages);
    if (encoded.tokens.length > maxTokens)
      throw new DatasetError(`${where}: ${encoded.tokens.length} tokens, longer than --max-seq ${maxTokens}`);
    examples.push({ line: i + 1, ...encoded });
  });
  if (examples.length === 0) throw new DatasetError(`${path} holds no examples`);
  return examples;
}
