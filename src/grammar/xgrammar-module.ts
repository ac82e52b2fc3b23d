/**
 * Loads @mlc-ai/web-xgrammar (XGrammar's WebAssembly build, the grammar engine vLLM and SGLang use).
 *
 * The package declares `"type": "module"` but ships a UMD bundle that calls `require`, so neither
 * `import` nor `require` loads it under Node: the bundle's text is run here as the CommonJS module
 * it is. Loaded once, on the first structured-output request.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type * as XGrammar from '@mlc-ai/web-xgrammar';

export type { XGrammar };

let loaded: typeof XGrammar | null = null;

export function xgrammar(): typeof XGrammar {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const file = require.resolve('@mlc-ai/web-xgrammar');
  const module = { exports: {} as typeof XGrammar };
  const run = new Function('exports', 'module', 'require', '__filename', '__dirname', readFileSync(file, 'utf8'));
  run.call(module.exports, module.exports, module, createRequire(file), file, dirname(file));
  loaded = module.exports;
  return loaded;
}
