/**
 * How a command fails: one line on stderr naming the problem, a non-zero exit code, and no stack
 * trace (set LORASERVE_DEBUG=1 to get one). Usage errors exit 2, everything else 1.
 */
import { CommandLineError, LoraServeError } from '../errors.js';

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();

function isUsage(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return err instanceof CommandLineError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_'));
}

/** The sentence a user sees for an error that stopped a command. */
export function failureLine(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  const quoted = () => /'([^']+)'/.exec(e.message)?.[1] ?? '';
  if (e?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option ${quoted()}: see --help for the options`;
  if (e?.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return `unexpected argument ${quoted()}: options take the form --name value`;
  if (e?.code === 'EADDRINUSE') return `cannot listen on ${e.address}:${e.port}: the port is already in use`;
  if (e?.code === 'EACCES' && e.syscall === 'listen') return `cannot listen on ${e.address}:${e.port}: permission denied`;
  if (!(err instanceof Error)) return oneLine(String(err));
  const cause = err.cause instanceof Error && err instanceof LoraServeError && !err.message.includes(err.cause.message) ? ` (${err.cause.message})` : '';
  return oneLine(`${err.message}${cause}`);
}

/** Runs a command to completion, or exits with its failure line. */
export async function runCommand(work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (err) {
    process.stderr.write(`loraserve: ${failureLine(err)}\n`);
    if (process.env.LORASERVE_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(isUsage(err) ? 2 : 1);
  }
}
