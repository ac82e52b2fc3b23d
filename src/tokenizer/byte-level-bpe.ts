/**
 * Writes `tokenizer.json` for a byte-level BPE tokenizer (the GPT-2 / Llama-3 / Qwen2 scheme), the
 * format `@huggingface/transformers` and `tokenizers` read. Every byte has a token, so any UTF-8
 * text (Korean included) round-trips even with no merges.
 */

/** GPT-2's reversible map from bytes to printable code points. */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = printable.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  }
  return table;
}

export interface ByteLevelBpe {
  /** Merges in priority order, each a pair of byte-level token strings. */
  merges: Array<[string, string]>;
  specials: readonly string[];
}

/** Token ids: the 256 byte tokens, then one per merge, then the special tokens. */
export function tokenizerJson({ merges, specials }: ByteLevelBpe): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  let size = 0;
  for (const ch of bytesToUnicode()) vocab[ch] = size++;
  for (const [a, b] of merges) if (!Object.hasOwn(vocab, a + b)) vocab[a + b] = size++;
  const base = size;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, i) => ({
      id: base + i,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map(([a, b]) => [a, b]),
    },
  };
}

export function tokenizerConfigJson(specials: readonly string[], chatTemplate: string, eos: string): Record<string, unknown> {
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: null,
    eos_token: eos,
    pad_token: eos,
    unk_token: null,
    model_max_length: 2048,
    clean_up_tokenization_spaces: false,
    chat_template: chatTemplate,
    additional_special_tokens: specials.filter((s) => s !== eos),
  };
}
