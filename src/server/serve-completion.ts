/**
 * Runs one chat or text completion and answers it: a JSON body, or Server-Sent Events in OpenAI's
 * chunk format. A client that goes away cancels its generation; a request that outlives the
 * timeout is cancelled too.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';
import { RequestTimeoutError } from '../errors.js';
import type { Generation } from '../engine/index.js';
import { generateRequest, type SamplingBody } from './completion-request.js';
import type { RequestTrack } from './metrics.js';
import type { ResolvedModel, Serving } from './serving.js';
import { SseWriter } from './sse.js';
import { usage, type WireShape } from './wire-shapes.js';

export interface Completion {
  model: ResolvedModel;
  promptTokens: number[];
  body: SamplingBody;
  shape: WireShape;
  /** Label of the endpoint in metrics. */
  endpoint: 'chat' | 'completions';
  /** Text completions with `echo`: the prompt, sent back before the answer. */
  echo?: string;
}

export async function serveCompletion(serving: Serving, request: FastifyRequest, reply: FastifyReply, c: Completion): Promise<unknown> {
  const track = serving.metrics.track(c.model.id, c.endpoint);
  const req = generateRequest(c.body, c.promptTokens, serving.config, c.endpoint === 'chat' ? 'messages' : 'prompt');
  const limit = requestLimit(reply, serving.config.requestTimeoutMs);
  let gen: Generation;
  try {
    gen = await serving.start(c.model, req, limit.signal);
  } catch (err) {
    limit.clear();
    track.done((err as { status?: number }).status ?? 500);
    if (limit.timedOut()) throw new RequestTimeoutError(`no adapter slot became free within ${serving.config.requestTimeoutMs} ms`);
    throw err;
  }
  const id = `${c.shape.idPrefix}${randomUUID().replaceAll('-', '')}`;
  const created = Math.floor(Date.now() / 1000);
  try {
    if (!c.body.stream) {
      for await (const _ of gen) track.token();
      const result = await gen.result;
      if (limit.timedOut()) throw new RequestTimeoutError(`generation did not finish within ${serving.config.requestTimeoutMs} ms`);
      track.done(200, result);
      return {
        id,
        object: c.shape.object,
        created,
        model: c.model.id,
        choices: [c.shape.choice((c.echo ?? '') + result.text, result.finishReason)],
        usage: usage(result),
      };
    }
    await stream(new SseWriter(reply, String(request.id)), gen, c, { id, created }, track, request.log);
    return reply;
  } finally {
    limit.clear();
  }
}

/** Streams a generation's chunks; a failure mid-stream becomes an error event (the status line is already sent). */
async function stream(
  sse: SseWriter,
  gen: Generation,
  c: Completion,
  ids: { id: string; created: number },
  track: RequestTrack,
  log: FastifyBaseLogger,
): Promise<void> {
  const frame = (choices: unknown[], extra: Record<string, unknown> = {}) => ({
    ...ids,
    object: c.shape.chunkObject,
    model: c.model.id,
    choices,
    ...extra,
  });
  try {
    let first = true;
    if (c.shape.opensWithRole || c.echo) {
      sse.send(frame([c.shape.chunk(c.echo ?? '', true, null)]));
      first = false;
    }
    for await (const text of gen) {
      track.token();
      sse.send(frame([c.shape.chunk(text, first, null)]));
      first = false;
    }
    const result = await gen.result;
    sse.send(frame([c.shape.chunk(null, first, result.finishReason)]));
    if (c.body.stream_options?.include_usage) sse.send(frame([], { usage: usage(result) }));
    sse.done();
    track.done(200, result);
  } catch (err) {
    log.error({ err }, 'stream failed');
    const e = err as { code?: string; type?: string };
    sse.send({ error: { message: 'generation failed', type: e.type ?? 'server_error', code: e.code ?? 'internal_error', param: null } });
    track.done(500);
  } finally {
    sse.end();
  }
}

/** Aborts when the client disconnects or the time limit passes. */
function requestLimit(reply: FastifyReply, timeoutMs: number): { signal: AbortSignal; timedOut(): boolean; clear(): void } {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return { signal: controller.signal, timedOut: () => timedOut, clear: () => clearTimeout(timer) };
}
