/**
 * How a command fails. A mistake the user can fix (a flag, the keys file, a model or adapter
 * folder, a dataset, a port already taken) is one line on stderr and exit status 2, no stack
 * trace; anything else is a bug and keeps its stack trace.
 */
import { LoraServeError } from '../errors.js';

type SystemError = NodeJS.ErrnoException & { address?: string; port?: number };

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();

/** The sentence for a mistake the user can fix, or null when the error is a bug. */
export function usageLine(err: unknown): string | null {
  const e = err as SystemError;
  const quoted = () => /'([^']+)'/.exec(e.message)?.[1] ?? '';
  if (e?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown option ${quoted()}: see --help for the options`;
  if (e?.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return `unexpected argument ${quoted()}: options take the form --name value`;
  if (String(e?.code).startsWith('ERR_PARSE_ARGS_')) return oneLine(e.message);
  if (e?.syscall === 'listen' && e.code === 'EADDRINUSE') return `cannot listen on ${e.address}:${e.port}: the port is already in use`;
  if (e?.syscall === 'listen' && e.code === 'EACCES') return `cannot listen on ${e.address}:${e.port}: permission denied`;
  return err instanceof LoraServeError ? oneLine(err.message) : null;
}

/** Runs a command to completion, or exits with its failure line. */
export async function runCommand(work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (err) {
    const line = usageLine(err);
    if (line === null) throw err;
    process.stderr.write(`loraserve: ${line}\n`);
    process.exit(2);
  }
}
