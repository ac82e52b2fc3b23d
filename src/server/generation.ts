/**
 * Runs one generation for a chat or text completion route and answers it: a JSON body, or
 * Server-Sent Events in OpenAI's chunk format ending with `data: [DONE]`. A client that goes away
 * cancels its generation; a request that outlives the timeout, or a drain's deadline, is
 * cancelled too and answered at once with that error (in a stream: an error chunk, then [DONE]).
 */
import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { LoraServeError, MaxTokensTooLargeError, PromptTooLongError, RequestCancelledError, RequestTimeoutError, UnsupportedParameterError } from '../errors.js';
import { untilAborted } from '../util/until-aborted.js';
import type { FinishReason, Generation } from '../engine/index.js';
import type { ResolvedModel, Serving } from './serving.js';

export interface SamplingBody {
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  frequency_penalty?: number | null;
  presence_penalty?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  ignore_eos?: boolean | null;
}

/** How chat and text completions differ on the wire. */
export interface WireShape {
  object: 'chat.completion' | 'text_completion';
  chunkObject: 'chat.completion.chunk' | 'text_completion';
  idPrefix: string;
  choice(text: string, finish: FinishReason | null): Record<string, unknown>;
  chunk(text: string | null, first: boolean, finish: FinishReason | null): Record<string, unknown>;
}

const wireFinish = (f: FinishReason | null) => (f === 'cancelled' ? 'stop' : f);

export const CHAT_SHAPE: WireShape = {
  object: 'chat.completion',
  chunkObject: 'chat.completion.chunk',
  idPrefix: 'chatcmpl-',
  choice: (text, finish) => ({ index: 0, message: { role: 'assistant', content: text }, finish_reason: wireFinish(finish), logprobs: null }),
  chunk: (text, first, finish) => ({
    index: 0,
    delta: { ...(first ? { role: 'assistant' } : {}), ...(text !== null ? { content: text } : {}) },
    finish_reason: wireFinish(finish),
    logprobs: null,
  }),
};

export const TEXT_SHAPE: WireShape = {
  object: 'text_completion',
  chunkObject: 'text_completion',
  idPrefix: 'cmpl-',
  choice: (text, finish) => ({ index: 0, text, finish_reason: wireFinish(finish), logprobs: null }),
  chunk: (text, _first, finish) => ({ index: 0, text: text ?? '', finish_reason: wireFinish(finish), logprobs: null }),
};

export async function serveGeneration(
  serving: Serving,
  request: FastifyRequest,
  reply: FastifyReply,
  args: { model: ResolvedModel; promptTokens: number[]; body: SamplingBody; shape: WireShape; endpoint: string; echo?: string },
): Promise<unknown> {
  const { model, promptTokens, body, shape, endpoint } = args;
  const started = performance.now();
  const cfg = serving.config;
  if (body.n !== undefined && body.n !== null && body.n !== 1) throw new UnsupportedParameterError('n must be 1', { param: 'n' });
  if (promptTokens.length > cfg.maxPromptTokens) {
    throw new PromptTooLongError(`the prompt is ${promptTokens.length} tokens; this server accepts at most ${cfg.maxPromptTokens}`, { param: 'messages' });
  }
  const asked = body.max_completion_tokens ?? body.max_tokens;
  if (asked && asked > cfg.maxTokens) throw new MaxTokensTooLargeError(`max_tokens ${asked} exceeds this server's limit of ${cfg.maxTokens}`, { param: 'max_tokens' });
  const temperature = body.temperature ?? 1;
  const controller = new AbortController();
  const untrack = serving.inFlight.add(controller);
  const timer = setTimeout(() => controller.abort(new RequestTimeoutError(`the request did not finish within ${cfg.requestTimeoutMs} ms`)), cfg.requestTimeoutMs);
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort(new RequestCancelledError('the client closed the connection'));
  });
  const labels = { adapter: model.id, endpoint };
  let gen: Generation;
  try {
    gen = await serving.start(model, {
      promptTokens,
      maxTokens: asked ?? cfg.maxTokens,
      stop: body.stop === undefined || body.stop === null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop,
      ignoreEos: body.ignore_eos ?? false,
      sampling: {
        temperature,
        topP: body.top_p ?? 1,
        topK: body.top_k && body.top_k > 0 ? body.top_k : 0,
        frequencyPenalty: body.frequency_penalty ?? 0,
        presencePenalty: body.presence_penalty ?? 0,
        seed: body.seed ?? null,
      },
    }, controller.signal);
  } catch (err) {
    clearTimeout(timer);
    untrack();
    const reason = controller.signal.aborted && controller.signal.reason instanceof LoraServeError ? controller.signal.reason : err;
    serving.metrics.requests.inc({ ...labels, status: String((reason as { status?: number }).status ?? 500) });
    throw reason;
  }
  const id = `${shape.idPrefix}${randomUUID().replaceAll('-', '')}`;
  const created = Math.floor(Date.now() / 1000);
  let last = 0;
  const observe = () => {
    const now = performance.now();
    if (last === 0) serving.metrics.ttft.observe({ adapter: model.id }, (now - started) / 1000);
    else serving.metrics.itl.observe({ adapter: model.id }, (now - last) / 1000);
    last = now;
  };
  const usage = (r: { promptTokens: number; completionTokens: number }) => ({ prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens });
  const account = (r: { promptTokens: number; completionTokens: number }, status: number) => {
    serving.metrics.requests.inc({ ...labels, status: String(status) });
    serving.metrics.tokens.inc({ adapter: model.id, kind: 'prompt' }, r.promptTokens);
    serving.metrics.tokens.inc({ adapter: model.id, kind: 'completion' }, r.completionTokens);
    serving.refreshGauges();
  };

  if (!body.stream) {
    try {
      for await (const _ of untilAborted(gen, controller.signal)) observe();
      const result = await gen.result;
      account(result, 200);
      return { id, object: shape.object, created, model: model.id, choices: [shape.choice((args.echo ?? '') + result.text, result.finishReason)], usage: usage(result) };
    } catch (err) {
      serving.metrics.requests.inc({ ...labels, status: String((err as { status?: number }).status ?? 500) });
      throw err;
    } finally {
      clearTimeout(timer);
      untrack();
    }
  }

  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-request-id': String(request.id) });
  const send = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\n\n`);
  const frame = (choices: unknown[], extra: Record<string, unknown> = {}) => ({ id, object: shape.chunkObject, created, model: model.id, choices, ...extra });
  try {
    let first = true;
    if (shape === CHAT_SHAPE) {
      send(frame([shape.chunk(args.echo ?? '', true, null)]));
      first = false;
    } else if (args.echo) send(frame([shape.chunk(args.echo, true, null)]));
    for await (const text of untilAborted(gen, controller.signal)) {
      observe();
      send(frame([shape.chunk(text, first, null)]));
      first = false;
    }
    const result = await gen.result;
    send(frame([shape.chunk(null, first, result.finishReason)]));
    if (body.stream_options?.include_usage) send(frame([], { usage: usage(result) }));
    res.write('data: [DONE]\n\n');
    account(result, 200);
  } catch (err) {
    const known = err instanceof LoraServeError;
    if (!known || err.status >= 500) request.log.error({ err }, 'stream failed');
    else request.log.info({ code: err.code }, 'stream ended early');
    send({ error: known ? { message: err.message, type: err.type, code: err.code, param: err.param } : { message: 'generation failed', type: 'server_error', code: 'internal_error', param: null } });
    res.write('data: [DONE]\n\n');
    serving.metrics.requests.inc({ ...labels, status: String(known ? err.status : 500) });
  } finally {
    clearTimeout(timer);
    untrack();
    res.end();
  }
  return reply;
}
