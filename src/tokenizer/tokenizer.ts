import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';
import { InvalidRequestError, TokenizerError } from '../errors.js';
import { bytesToUnicode } from './byte-level-bpe.js';

// Offline by construction: tokenizers only ever come from local model folders.
env.allowRemoteModels = false;
env.allowLocalModels = true;

/** GPT-2's byte table reversed: the byte each byte-level character stands for. */
const BYTE_OF = new Map(bytesToUnicode().map((ch, b) => [ch, b]));

/** How a vocabulary's token strings spell bytes (XGrammar's vocab types). */
export type VocabEncoding = 'byte_level' | 'byte_fallback' | 'raw';

export interface ChatMessage {
  role: string;
  content: string;
  /** A participant's name (OpenAI's field), for templates that render it. */
  name?: string;
  /** An assistant turn's calls, as transformers passes them to templates (arguments as an object). */
  tool_calls?: Array<{ id: string; type: 'function'; function: { name: string; arguments: unknown } }>;
  /** A `tool` turn: the call it answers. */
  tool_call_id?: string;
}

/** A function offered to the model, as templates read the `tools` variable (transformers' apply_chat_template(tools=...)). */
export interface ChatTool {
  type: 'function';
  function: { name: string; description?: string; parameters?: object };
}

/** The model folder's tokenizer and chat template, through @huggingface/transformers. */
export class Tokenizer {
  private vocab: string[] | null = null;

  private constructor(
    private readonly tok: PreTrainedTokenizer,
    readonly encoding: VocabEncoding,
  ) {}

  static async load(dir: string): Promise<Tokenizer> {
    const file = join(dir, 'tokenizer.json');
    if (!existsSync(file)) throw new TokenizerError(`${dir} has no tokenizer.json`);
    try {
      env.localModelPath = '/';
      const tok = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
      const decoder = JSON.stringify(JSON.parse(readFileSync(file, 'utf8')).decoder ?? null);
      const encoding = decoder.includes('"ByteLevel"') ? 'byte_level' : decoder.includes('"ByteFallback"') ? 'byte_fallback' : 'raw';
      return new Tokenizer(tok, encoding);
    } catch (cause) {
      throw new TokenizerError(`could not load the tokenizer in ${dir}: ${(cause as Error).message}`, { cause });
    }
  }

  encode(text: string): number[] {
    return this.tok.encode(text, { add_special_tokens: false });
  }

  /** Ids of a raw prompt, with the tokenizer's own special tokens (BOS) where it adds them. */
  encodePrompt(text: string): number[] {
    return this.tok.encode(text);
  }

  decode(ids: number[]): string {
    if (ids.length === 0) return '';
    return this.tok.decode(ids, { skip_special_tokens: true });
  }

  /**
   * The bytes one token stands for (OpenAI's `bytes` field): a byte-level token's characters mapped
   * back through GPT-2's byte table, a SentencePiece `<0xNN>` byte token as its byte, else its
   * UTF-8 text with `▁` as a space.
   */
  tokenBytes(id: number): Uint8Array {
    this.vocab ??= this.vocabById();
    const piece = this.vocab[id] ?? '';
    if (this.encoding === 'byte_level') {
      if ([...piece].every((ch) => BYTE_OF.has(ch))) return Uint8Array.from([...piece], (ch) => BYTE_OF.get(ch)!);
    }
    const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
    if (byte) return Uint8Array.of(parseInt(byte[1]!, 16));
    return new TextEncoder().encode(piece.replaceAll('\u2581', ' '));
  }

  /**
   * Every token's string by id, as tokenizer.json spells it, with special tokens (chat markers, BOS)
   * as '': what a grammar engine needs to know which tokens can spell which text.
   */
  tokenStrings(): string[] {
    const pieces = [...(this.vocab ??= this.vocabById())].map((p) => p ?? '');
    for (const id of this.tok.all_special_ids as number[]) pieces[id] = '';
    return pieces;
  }

  private vocabById(): string[] {
    const byId: string[] = [];
    for (const [piece, id] of this.tok.get_vocab() as Map<string, number>) byId[id] = piece;
    return byId;
  }

  get hasChatTemplate(): boolean {
    return Boolean(this.tok.chat_template);
  }

  /** The chat template's source ('' when there is none), for callers that adapt to what it renders. */
  get chatTemplate(): string {
    const t: unknown = this.tok.chat_template;
    return typeof t === 'string' ? t : t ? JSON.stringify(t) : '';
  }

  applyChatTemplate(messages: ChatMessage[], tools?: ChatTool[]): number[] {
    if (!this.hasChatTemplate) throw new InvalidRequestError('this model has no chat template; use /v1/completions with a raw prompt');
    try {
      // The rendered template already holds its special tokens; encode it verbatim.
      return this.encode(this.renderChat(messages, true, tools));
    } catch (cause) {
      throw new InvalidRequestError(`the chat template rejected these messages: ${(cause as Error).message}`, { cause, param: 'messages' });
    }
  }

  renderChat(messages: ChatMessage[], addGenerationPrompt = true, tools?: ChatTool[]): string {
    if (messages.length === 0) return '';
    return this.tok.apply_chat_template(messages as Parameters<PreTrainedTokenizer['apply_chat_template']>[0], {
      add_generation_prompt: addGenerationPrompt,
      tokenize: false,
      ...(tools ? { tools } : {}),
    }) as string;
  }

  get eosTokenId(): number | null {
    const id = this.tok.eos_token_id;
    return typeof id === 'number' ? id : null;
  }
}
