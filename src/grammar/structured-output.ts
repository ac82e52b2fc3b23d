/**
 * Structured output: an OpenAI response_format compiled by XGrammar into a token-level grammar for
 * this model's vocabulary. Compiling costs milliseconds to seconds, so each distinct schema is
 * compiled once and kept (LRU); every row that uses it gets its own matcher.
 */
import { LRUCache } from 'lru-cache';
import { UnsupportedSchemaError } from '../errors.js';
import type { ConstraintWalker, OutputConstraint } from './output-constraint.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { compilableSchema } from './schema-support.js';
import { Utf8Guard } from './utf8-guard.js';
import { xgrammar, type XGrammar } from './xgrammar-module.js';

/** OpenAI's response_format, as the wire carries it. */
export interface ResponseFormat {
  type: 'text' | 'json_object' | 'json_schema';
  json_schema?: { name: string; description?: string; schema?: object; strict?: boolean | null };
}

/** Any JSON object: OpenAI's JSON mode. */
const JSON_OBJECT = { type: 'object', additionalProperties: true };

export interface StructuredOutputOptions {
  /** Width of the logits (config vocab_size, which may exceed the tokenizer's). */
  vocabSize: number;
  /** Tokens that end the output once the grammar is complete. */
  stopTokenIds: number[];
  /** Distinct compiled schemas kept. */
  cacheSize?: number;
}

export class StructuredOutput {
  private compiler: Promise<XGrammar.GrammarCompiler> | null = null;
  private guard: Utf8Guard | null = null;
  private vocabularyCache: string[] | null = null;
  private readonly compiled: LRUCache<string, Promise<XGrammar.CompiledGrammar>>;

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly options: StructuredOutputOptions,
  ) {
    this.compiled = new LRUCache({
      max: options.cacheSize ?? 64,
      // Matchers hold their own reference to the grammar, so an evicted one can go at once.
      dispose: (grammar) =>
        void grammar.then(
          (g) => g.dispose(),
          () => {},
        ),
    });
  }

  /** Token strings by id as the grammar sees them: special tokens blank, none past the logits. */
  private get vocabulary(): string[] {
    return (this.vocabularyCache ??= this.tokenizer.tokenStrings().slice(0, this.options.vocabSize));
  }

  /** The constraint a response_format asks for; null for plain text. */
  async constraint(format: ResponseFormat | null | undefined): Promise<OutputConstraint | null> {
    if (!format || format.type === 'text') return null;
    const schema = format.type === 'json_object' ? JSON_OBJECT : format.json_schema?.schema;
    if (schema === undefined)
      throw new UnsupportedSchemaError('response_format json_schema needs json_schema: {name, schema}', { param: 'response_format' });
    const key = JSON.stringify(compilableSchema(schema));
    let grammar = this.compiled.get(key);
    if (!grammar) {
      grammar = this.compile(key);
      this.compiled.set(key, grammar);
      grammar.catch(() => this.compiled.delete(key));
    }
    const compiled = await grammar;
    const { stopTokenIds } = this.options;
    const guard = (this.guard ??= new Utf8Guard(
      this.vocabulary.map((piece, id) => (piece ? this.tokenizer.tokenBytes(id) : new Uint8Array())),
    ));
    return {
      start: async () => new GrammarWalker(await xgrammar().GrammarMatcher.createGrammarMatcher(compiled, stopTokenIds), guard),
    };
  }

  private async compile(schemaText: string): Promise<XGrammar.CompiledGrammar> {
    const compiler = await (this.compiler ??= this.createCompiler());
    try {
      // Compact JSON on one line: no free whitespace for a model to loop in.
      return await compiler.compileJSONSchema(schemaText, false, -1, [',', ':'], true);
    } catch (cause) {
      throw new UnsupportedSchemaError(`response_format's JSON schema could not be compiled: ${String(cause)}`, {
        cause,
        param: 'response_format',
      });
    }
  }

  private async createCompiler(): Promise<XGrammar.GrammarCompiler> {
    const x = xgrammar();
    const { vocabSize, stopTokenIds } = this.options;
    const info = await x.TokenizerInfo.createTokenizerInfo(this.vocabulary, this.tokenizer.encoding, false, vocabSize, stopTokenIds);
    return x.GrammarCompiler.createGrammarCompiler(info, false);
  }
}

/** One row's place in its grammar, and inside the character it is writing. */
class GrammarWalker implements ConstraintWalker {
  private utf8 = Utf8Guard.start;

  constructor(
    private readonly matcher: XGrammar.GrammarMatcher,
    private readonly guard: Utf8Guard,
  ) {}

  async nextAllowed(): Promise<Int32Array> {
    const mask = await this.matcher.getNextTokenBitmask();
    this.guard.restrict(mask, this.utf8);
    return mask;
  }

  accept(token: number): boolean {
    this.utf8 = this.guard.after(this.utf8, token);
    return this.matcher.acceptToken(token);
  }

  dispose(): void {
    this.matcher.dispose();
  }
}
