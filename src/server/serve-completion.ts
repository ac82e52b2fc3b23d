/**
 * Runs one chat or text completion and answers it: a JSON body, or Server-Sent Events in OpenAI's
 * chunk format. A client that goes away cancels its generation; a request that outlives the
 * timeout, or a drain's deadline, is cancelled too and answered at once with that error (in a
 * stream: an error event, then [DONE]).
 */
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';
import { LoraServeError, RequestCancelledError, RequestTimeoutError } from '../errors.js';
import type { Generation } from '../engine/index.js';
import { generateRequest, type SamplingBody } from './completion-request.js';
import type { RequestTrack } from './metrics.js';
import type { ResolvedModel, Serving } from './serving.js';
import { SseWriter } from './sse.js';
import { untilAborted } from '../util/until-aborted.js';
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
  const limit = requestLimit(serving, reply);
  let gen: Generation;
  try {
    gen = await serving.start(c.model, req, limit.signal);
  } catch (err) {
    limit.clear();
    const reason = limit.reason() ?? err;
    track.done((reason as { status?: number }).status ?? 500);
    throw reason;
  }
  const id = `${c.shape.idPrefix}${randomUUID().replaceAll('-', '')}`;
  const created = Math.floor(Date.now() / 1000);
  try {
    if (!c.body.stream) {
      let result;
      try {
        for await (const _ of untilAborted(gen, limit.signal)) track.token();
        result = await gen.result;
      } catch (err) {
        track.done((err as { status?: number }).status ?? 500);
        throw err;
      }
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
    await stream(new SseWriter(reply, String(request.id)), gen, limit.signal, c, { id, created }, track, request.log);
    return reply;
  } finally {
    limit.clear();
  }
}

/** Streams a generation's chunks; a failure mid-stream becomes an error event (the status line is already sent). */
async function stream(
  sse: SseWriter,
  gen: Generation,
  signal: AbortSignal,
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
    for await (const text of untilAborted(gen, signal)) {
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
    const known = err instanceof LoraServeError;
    if (!known || err.status >= 500) log.error({ err }, 'stream failed');
    else log.info({ code: err.code }, 'stream ended early');
    sse.send({
      error: known
        ? { message: err.message, type: err.type, code: err.code, param: err.param }
        : { message: 'generation failed', type: 'server_error', code: 'internal_error', param: null },
    });
    sse.done();
    track.done(known ? err.status : 500);
  } finally {
    sse.end();
  }
}

/**
 * The request's abort signal, tracked in the server's in-flight set (a drain waits for it and at
 * its deadline aborts it). It aborts when the client disconnects or the time limit passes; the
 * reason is the error the request is answered with.
 */
function requestLimit(serving: Serving, reply: FastifyReply): { signal: AbortSignal; reason(): LoraServeError | null; clear(): void } {
  const controller = new AbortController();
  const untrack = serving.inFlight.add(controller);
  const timeoutMs = serving.config.requestTimeoutMs;
  const timer = setTimeout(() => controller.abort(new RequestTimeoutError(`the request did not finish within ${timeoutMs} ms`)), timeoutMs);
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort(new RequestCancelledError('the client closed the connection'));
  });
  return {
    signal: controller.signal,
    reason: () => (controller.signal.reason instanceof LoraServeError ? controller.signal.reason : null),
    clear: () => {
      clearTimeout(timer);
      untrack();
    },
  };
}
