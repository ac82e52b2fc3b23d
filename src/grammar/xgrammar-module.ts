/**
 * Loads @mlc-ai/web-xgrammar (XGrammar's WebAssembly build, the grammar engine vLLM and SGLang use).
 *
 * The package declares `"type": "module"` but ships a UMD bundle that calls `require`, so neither
 * `import` nor `require` loads it under Node: the bundle's text is run here as the CommonJS module
 * it is, on the first structured-output request.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type * as XGrammar from '@mlc-ai/web-xgrammar';

export type { XGrammar };

let source: { file: string; text: string } | null = null;

/**
 * A fresh XGrammar instance (its own WebAssembly memory), started. An instance that aborted on a
 * schema is left in an undefined state, so callers replace it rather than reuse it. The instance
 * reports why it failed ("[FATAL] …") on the console.error it finds when it starts; that is
 * pointed at `diagnostic` instead, so the reason reaches the client's 400 rather than stderr (for
 * the few milliseconds of the start, anything else in the process logging to console.error goes
 * there too).
 */
export async function loadXgrammar(diagnostic: (line: string) => void): Promise<typeof XGrammar> {
  if (!source) {
    const file = createRequire(import.meta.url).resolve('@mlc-ai/web-xgrammar');
    source = { file, text: readFileSync(file, 'utf8') };
  }
  const module = { exports: {} as typeof XGrammar };
  const run = new Function('exports', 'module', 'require', '__filename', '__dirname', source.text);
  run.call(module.exports, module.exports, module, createRequire(source.file), source.file, dirname(source.file));
  const consoleError = console.error;
  console.error = (...args: unknown[]) => diagnostic(args.join(' '));
  try {
    // The instance binds console.error while it starts, which this first call does.
    (await module.exports.Grammar.builtinJSONGrammar()).dispose();
  } finally {
    console.error = consoleError;
  }
  return module.exports;
}
