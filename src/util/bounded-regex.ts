/**
 * Regular expressions that come from untrusted input (an uploaded adapter_config.json) run under
 * a time budget: a pattern with catastrophic backtracking, such as `(.*)*x`, would otherwise
 * hold the event loop for hours. V8 interrupts a script run with a timeout even inside a regex.
 */
import vm from 'node:vm';

export class RegexBudgetError extends Error {}

const context = vm.createContext({ source: '', inputs: [] as string[] });
const script = new vm.Script('{ const re = new RegExp(source); inputs.map((s) => re.exec(s)); }');

/** `new RegExp(source).exec(s)` for every input, or RegexBudgetError when all of them take longer than `budgetMs`. */
export function execAll(source: string, inputs: readonly string[], budgetMs = 100): Array<RegExpExecArray | null> {
  context.source = source;
  context.inputs = inputs;
  try {
    return script.runInContext(context, { timeout: budgetMs }) as Array<RegExpExecArray | null>;
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT')
      throw new RegexBudgetError(`${JSON.stringify(source)} took over ${budgetMs} ms to match`);
    throw err;
  } finally {
    context.inputs = [];
  }
}
