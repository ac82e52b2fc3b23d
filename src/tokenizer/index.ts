export { Tokenizer, type ChatMessage, type ChatTool, type VocabEncoding } from './tokenizer.js';
export { IncrementalDetokenizer } from './detokenizer.js';
export { bytesToUnicode, tokenizerJson, tokenizerConfigJson } from './byte-level-bpe.js';
export { CHATML_TEMPLATE, CHATML_SPECIALS } from './chat-template.js';
