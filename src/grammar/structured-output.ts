/**
 * Structured output: an OpenAI response_format (or a request's tool calls, see tool-calls.ts)
 * compiled by XGrammar into a token-level grammar for this model's vocabulary. Compiling costs
 * milliseconds to seconds, so each distinct grammar is compiled once and kept (LRU); every row that
 * uses it gets its own matcher. A schema that still makes XGrammar fail is a 400, and the instance
 * it failed in is replaced.
 */
import { LRUCache } from 'lru-cache';
import { UnsupportedSchemaError } from '../errors.js';
import type { ConstraintWalker, OutputConstraint } from './output-constraint.js';
import type { Tokenizer, VocabEncoding } from '../tokenizer/index.js';
import { compilableSchema } from './schema-support.js';
import { toolCallTag, type ToolCallGrammar } from './tool-calls.js';
import { Utf8Guard } from './utf8-guard.js';
import { loadXgrammar, type XGrammar } from './xgrammar-module.js';

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
  /** Schemas compiled so far (cache misses), for tests and metrics. */
  compilations = 0;
  private runtime: Runtime | null = null;
  private guard: Utf8Guard | null = null;
  private vocabularyCache: string[] | null = null;
  /** Schemas that failed, with why: sent again, they are refused without paying for a new instance. */
  private readonly failed = new LRUCache<string, string>({ max: 256 });

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly options: StructuredOutputOptions,
  ) {}

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
    const text = JSON.stringify(compilableSchema(schema));
    return this.compiled(`schema:${text}`, { what: "response_format's JSON schema", param: 'response_format' }, (compiler) =>
      compiler.compileJSONSchema(text, false, -1, COMPACT, true),
    );
  }

  /**
   * The constraint for a request's tool calls (see tool-calls.ts): each function's parameters pass the
   * same keyword checks as a response_format schema, each refusal naming that function's field.
   */
  async toolCalls(grammar: ToolCallGrammar): Promise<OutputConstraint> {
    const functions = grammar.functions.map((f) => ({
      ...f,
      parameters: compilableSchema(f.parameters, { subject: f.param, param: f.param }) as object,
    }));
    const checked = { ...grammar, functions };
    return this.compiled(`tools:${JSON.stringify(checked)}`, { what: 'the tool-call grammar', param: 'tools' }, async (compiler, x) => {
      const ebnf = await Promise.all(
        functions.map(async (f) => {
          const g = await x.Grammar.fromJSONSchema(JSON.stringify(f.parameters), false, -1, COMPACT, true);
          try {
            return g.toString();
          } finally {
            g.dispose();
          }
        }),
      );
      return compiler.compileStructuralTag(toolCallTag(checked, ebnf));
    });
  }

  /** A grammar compiled once per key (on a fresh instance after a failure), as a constraint rows can start. */
  private async compiled(key: string, source: { what: string; param: string }, compile: Compile): Promise<OutputConstraint> {
    const failed = this.failed.get(key);
    if (failed) throw new UnsupportedSchemaError(failed, { param: source.param });
    const runtime = (this.runtime ??= new Runtime(this.vocabulary, this.tokenizer.encoding, this.options, () => this.compilations++));
    let compiled: XGrammar.CompiledGrammar;
    try {
      compiled = await runtime.compile(key, compile);
    } catch (cause) {
      // The instance may have aborted half-way: the next schema gets a fresh one.
      if (this.runtime === runtime) this.runtime = null;
      const message = `${source.what} could not be compiled: ${runtime.failure() ?? String(cause)}`;
      this.failed.set(key, message);
      throw new UnsupportedSchemaError(message, { cause, param: source.param });
    }
    const guard = (this.guard ??= new Utf8Guard(
      this.vocabulary.map((piece, id) => (piece ? this.tokenizer.tokenBytes(id) : new Uint8Array())),
    ));
    return { start: async () => new GrammarWalker(await runtime.matcher(compiled), guard) };
  }
}

/** Compact JSON on one line: no free whitespace for a model to loop in. */
const COMPACT: [string, string] = [',', ':'];

type Compile = (compiler: XGrammar.GrammarCompiler, x: typeof XGrammar) => Promise<XGrammar.CompiledGrammar>;

/** One XGrammar instance: its compiler for this vocabulary and the grammars compiled on it. */
class Runtime {
  private readonly diagnostics: string[] = [];
  private readonly x = loadXgrammar((line) => this.diagnostics.push(line) > 8 && this.diagnostics.shift());
  private compiler: Promise<XGrammar.GrammarCompiler> | null = null;
  private readonly compiled: LRUCache<string, Promise<XGrammar.CompiledGrammar>>;

  constructor(
    private readonly vocabulary: string[],
    private readonly encoding: VocabEncoding,
    private readonly options: StructuredOutputOptions,
    private readonly onCompile: () => void,
  ) {
    this.compiled = new LRUCache({
      max: options.cacheSize ?? 64,
      // Matchers hold their own reference to the grammar, so an evicted one can go at once.
      dispose: (grammar) => void grammar.then((g) => g.dispose()).catch(() => {}),
    });
  }

  compile(key: string, how: Compile): Promise<XGrammar.CompiledGrammar> {
    let grammar = this.compiled.get(key);
    if (!grammar) {
      this.onCompile();
      grammar = (this.compiler ??= this.createCompiler()).then(async (c) => how(c, await this.x));
      this.compiled.set(key, grammar);
      grammar.catch(() => this.compiled.delete(key));
    }
    return grammar;
  }

  async matcher(grammar: XGrammar.CompiledGrammar): Promise<XGrammar.GrammarMatcher> {
    return (await this.x).GrammarMatcher.createGrammarMatcher(grammar, this.options.stopTokenIds);
  }

  /** XGrammar's own reason for the last failure ("Regex parsing error at position 3: …"), if it gave one. */
  failure(): string | null {
    const fatal = this.diagnostics.filter((line) => line.startsWith('[FATAL]')).at(-1);
    return fatal ? fatal.replace(/^\[FATAL\] \S+:\d+: /, '') : null;
  }

  private async createCompiler(): Promise<XGrammar.GrammarCompiler> {
    const x = await this.x;
    const { vocabSize, stopTokenIds } = this.options;
    const info = await x.TokenizerInfo.createTokenizerInfo(this.vocabulary, this.encoding, false, vocabSize, stopTokenIds);
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
