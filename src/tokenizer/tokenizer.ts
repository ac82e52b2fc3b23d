import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';
import { InvalidRequestError, TokenizerError } from '../errors.js';

// Offline by construction: tokenizers only ever come from local model folders.
env.allowRemoteModels = false;
env.allowLocalModels = true;

export interface ChatMessage {
  role: string;
  content: string;
}

/** The model folder's tokenizer and chat template, through @huggingface/transformers. */
export class Tokenizer {
  private constructor(private readonly tok: PreTrainedTokenizer) {}

  static async load(dir: string): Promise<Tokenizer> {
    if (!existsSync(join(dir, 'tokenizer.json'))) throw new TokenizerError(`${dir} has no tokenizer.json`);
    try {
      env.localModelPath = '/';
      return new Tokenizer(await AutoTokenizer.from_pretrained(dir, { local_files_only: true }));
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

  get hasChatTemplate(): boolean {
    return Boolean(this.tok.chat_template);
  }

  applyChatTemplate(messages: ChatMessage[]): number[] {
    if (!this.hasChatTemplate) throw new InvalidRequestError('this model has no chat template; use /v1/completions with a raw prompt');
    try {
      // The rendered template already holds its special tokens; encode it verbatim.
      return this.encode(this.renderChat(messages));
    } catch (cause) {
      throw new InvalidRequestError(`the chat template rejected these messages: ${(cause as Error).message}`, { cause, param: 'messages' });
    }
  }

  renderChat(messages: ChatMessage[], addGenerationPrompt = true): string {
    if (messages.length === 0) return '';
    return this.tok.apply_chat_template(messages, { add_generation_prompt: addGenerationPrompt, tokenize: false }) as string;
  }

  get eosTokenId(): number | null {
    const id = this.tok.eos_token_id;
    return typeof id === 'number' ? id : null;
  }
}
