import type { FastifyBaseLogger } from 'fastify';
import { ShuttingDownError } from '../errors.js';
import type { Serving } from './serving.js';

/**
 * Graceful shutdown: stop admitting (new generations and /ready answer 503 with Retry-After),
 * let every admitted generation finish until `timeoutMs`, then cancel the rest (streams get an
 * error chunk, others a 503) and wait until each has been answered. Returns whether everything
 * finished in time.
 */
export async function drain(serving: Serving, timeoutMs: number, log: FastifyBaseLogger): Promise<boolean> {
  serving.shuttingDown = true;
  log.info({ inFlight: serving.inFlight.size, timeoutMs }, 'draining: new requests get 503');
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  const finished = await Promise.race([serving.inFlight.whenEmpty().then(() => true as const), deadline]);
  clearTimeout(timer);
  if (!finished) {
    log.warn({ cancelled: serving.inFlight.size }, 'drain timeout: cancelling the requests still running');
    serving.inFlight.abortAll(
      new ShuttingDownError(`the server shut down before this request finished (drain timeout ${timeoutMs} ms); retry on another replica`, {
        headers: { 'retry-after': '5' },
      }),
    );
    await serving.inFlight.whenEmpty();
  }
  return finished;
}
