/**
 * Runs one chat or text completion and answers it: a JSON body, or Server-Sent Events in OpenAI's
 * chunk format. A client that goes away cancels its generation; a request that outlives the
 * timeout, or a drain's deadline, is cancelled too and answered at once with that error (in a
 * stream: an error event, then [DONE]).
 */
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify';
import { LoraServeError, RequestCancelledError, RequestTimeoutError } from '../errors.js';
import type { Generation, GenerationResult } from '../engine/index.js';
import { generateRequest, requestError, type CompletionPrompt, type SamplingBody } from './completion-request.js';
import { LogprobWire } from './logprobs-wire.js';
import type { ResolvedModel, Serving } from './serving.js';
import { SseWriter } from './sse.js';
import { ToolCallStream, toolCallChoice, type ToolUse } from './tool-calls.js';
import { untilAborted } from '../util/until-aborted.js';
import { usage, type LogprobSpan, type WireShape } from './wire-shapes.js';

export interface Completion {
  model: ResolvedModel;
  /** `n` choices per prompt (text completions may send several), indexed prompt by prompt. */
  prompts: CompletionPrompt[];
  body: SamplingBody;
  shape: WireShape;
  /** Label of the endpoint in metrics. */
  endpoint: 'chat' | 'completions';
  /** Alternatives reported per token when logprobs were asked for; null when they were not. */
  logprobs: number | null;
  /** A chat request's tools: its grammar, and answers split into content and tool_calls. */
  tools?: ToolUse | null;
}

interface Choice {
  prompt: CompletionPrompt;
  gen: Generation;
}

/** How a request ended, as its metrics count it: the HTTP status, and its tokens when it produced a result. */
interface Outcome {
  status: number;
  usage?: Usage;
}

type Usage = { promptTokens: number; completionTokens: number; cachedTokens: number };

/** What every chunk or body of one answer shares. */
interface AnswerIds {
  id: string;
  created: number;
  wire: LogprobWire;
}

export async function serveCompletion(serving: Serving, request: FastifyRequest, reply: FastifyReply, c: Completion): Promise<unknown> {
  // OpenAI's end-user id: kept in the request log, so abuse can be traced to a client's user.
  if (c.body.user) request.log.info({ user: c.body.user, model: c.model.id }, 'completion for an end user');
  const track = serving.metrics.track(c.model.id, c.endpoint);
  // Every way a request ends is counted here, once: refused by a check, by admission or by the
  // engine, failed, answered, or streamed (a stream's error goes out as an event, not a status line).
  try {
    const { body, outcome } = await answer(serving, request, reply, c, track.token);
    track.done(outcome.status, outcome.usage);
    return body;
  } catch (err) {
    track.done((err as { status?: number }).status ?? 500);
    throw err;
  }
}

/** Checks, admits and runs the request, and answers it as a JSON body or a stream. */
async function answer(
  serving: Serving,
  request: FastifyRequest,
  reply: FastifyReply,
  c: Completion,
  token: () => void,
): Promise<{ body: unknown; outcome: Outcome }> {
  const param = c.endpoint === 'chat' ? 'messages' : 'prompt';
  const reqs = engineRequests(serving, c, param);
  // Compiled after the cheap checks above, so a request they refuse never pays for a grammar.
  const constraint = c.tools?.grammar
    ? await serving.structuredOutput.toolCalls(c.tools.grammar)
    : await serving.structuredOutput.constraint(c.body.response_format);
  const tenant = request.caller.tenant;
  const admission = serving.admit(request.caller, {
    promptTokens: c.prompts.reduce((sum, p) => sum + p.tokens.length, 0),
    sequences: reqs.length * (c.body.n ?? 1),
  });
  reply.headers(admission.headers);
  const limit = requestLimit(serving, reply);
  const choices: Choice[] = [];
  try {
    try {
      for (const [i, req] of reqs.entries()) {
        const constrained = { ...req, tenant, ...(constraint ? { constraint } : {}) };
        for (const gen of await serving.startChoices(c.model, constrained, c.body.n ?? 1, limit.signal))
          choices.push({ prompt: c.prompts[i]!, gen });
      }
    } catch (err) {
      for (const ch of choices) ch.gen.cancel();
      const reason = limit.reason() ?? requestError(err, param);
      if ((reason as { status?: number }).status === 429) serving.limiter.refused(tenant);
      throw reason;
    }
    const ctx: AnswerIds = {
      id: `${c.shape.idPrefix}${randomUUID().replaceAll('-', '')}`,
      created: Math.floor(Date.now() / 1000),
      wire: new LogprobWire(serving.engine.tokenizer),
    };
    if (c.body.stream) {
      const outcome = await stream(new SseWriter(reply, String(request.id)), choices, limit.signal, c, ctx, token, request.log);
      return { body: reply, outcome };
    }
    return await whole(choices, limit.signal, c, ctx, token);
  } finally {
    // The tenant's in-flight count and token bucket are settled once every generation has ended.
    void Promise.allSettled(choices.map((ch) => ch.gen.result)).then((rs) =>
      admission.settle(rs.reduce((sum, r) => sum + (r.status === 'fulfilled' ? r.value.completionTokens : 0), 0)),
    );
    limit.clear();
  }
}

/** One engine request per prompt, checked against the server's limits; `param` names the prompt's field. */
function engineRequests(serving: Serving, c: Completion, param: 'messages' | 'prompt') {
  const logprobs = c.logprobs === null ? {} : { logprobs: c.logprobs };
  const limits = { ...serving.config, maxContext: serving.engine.options.maxContext };
  return c.prompts.map((p) => ({
    ...generateRequest(c.body, p.tokens, limits, param, serving.samplingDefaults),
    ...logprobs,
    promptLogprobs: c.logprobs !== null && p.echo !== undefined,
  }));
}

/** Waits for every choice and answers them in one JSON body. */
async function whole(
  choices: Choice[],
  signal: AbortSignal,
  c: Completion,
  ctx: AnswerIds,
  token: () => void,
): Promise<{ body: unknown; outcome: Outcome }> {
  let results: GenerationResult[];
  try {
    results = await Promise.all(
      choices.map(async (ch) => {
        for await (const _ of untilAborted(ch.gen, signal)) token();
        return ch.gen.result;
      }),
    );
  } catch (err) {
    for (const ch of choices) ch.gen.cancel();
    throw err;
  }
  const total = totalUsage(choices, results);
  const body = {
    id: ctx.id,
    object: c.shape.object,
    created: ctx.created,
    model: c.model.id,
    choices: results.map((r, i) => {
      const echo = choices[i]!.prompt.echo;
      const logprobs = c.logprobs === null ? null : c.shape.logprobs(ctx.wire, resultSpan(choices[i]!, r));
      if (c.tools) return toolCallChoice(i, r.text, r.finishReason, logprobs);
      return c.shape.choice(i, (echo ?? '') + r.text, r.finishReason, logprobs);
    }),
    usage: usage(total),
  };
  return { body, outcome: { status: 200, usage: total } };
}

/** A whole choice's logprobs: the echoed prompt's (first null) then the generated tokens'. */
function resultSpan(ch: Choice, r: GenerationResult): LogprobSpan {
  const generated = r.logprobs ?? [];
  const prompt = ch.prompt.echo !== undefined ? (r.promptLogprobs ?? []) : [];
  return {
    tokens: [...(ch.prompt.echo !== undefined ? ch.prompt.tokens : []), ...generated.map((l) => l.token)],
    logprobs: [...prompt, ...generated],
    offset: 0,
  };
}

/** Each prompt counts once (its cached tokens as its first choice found them), each choice's completion tokens add up. */
function totalUsage(choices: Choice[], results: GenerationResult[]): Usage {
  const firsts = new Map<Choice['prompt'], GenerationResult>();
  choices.forEach((ch, i) => firsts.has(ch.prompt) || firsts.set(ch.prompt, results[i]!));
  return {
    promptTokens: [...firsts.keys()].reduce((sum, p) => sum + p.tokens.length, 0),
    completionTokens: results.reduce((sum, r) => sum + r.completionTokens, 0),
    cachedTokens: [...firsts.values()].reduce((sum, r) => sum + r.cachedTokens, 0),
  };
}

/**
 * Streams every choice's chunks as they come (each tagged with its index); a failure mid-stream
 * becomes an error event (the status line is already sent) and the outcome carries its status.
 */
async function stream(
  sse: SseWriter,
  choices: Choice[],
  signal: AbortSignal,
  c: Completion,
  ctx: AnswerIds,
  token: () => void,
  log: FastifyBaseLogger,
): Promise<Outcome> {
  const frame = (chunks: unknown[], extra: Record<string, unknown> = {}) => ({
    id: ctx.id,
    created: ctx.created,
    object: c.shape.chunkObject,
    model: c.model.id,
    choices: chunks,
    ...extra,
  });
  const wireLogprobs = (span: LogprobSpan) => (c.logprobs === null ? null : c.shape.logprobs(ctx.wire, span));
  const one = async (ch: Choice, index: number): Promise<GenerationResult> => {
    let first = true;
    let offset = 0;
    const calls = c.tools ? new ToolCallStream() : null;
    const send = (text: string | null, finish: GenerationResult['finishReason'] | null, span: LogprobSpan | null) => {
      const logprobs = span ? wireLogprobs(span) : null;
      for (const chunk of calls
        ? calls.chunks(index, text, first, finish, logprobs)
        : [c.shape.chunk(index, text, first, finish, logprobs)])
        sse.send(frame([chunk]));
      first = false;
      if (text) offset += text.length;
    };
    // The echoed prompt (or chat's role) goes with the first delta, as OpenAI's streams do: a client
    // timing the first chunk then times the first token. The prompt's logprobs are complete by then.
    const open = () => {
      if (!first) return;
      if (ch.prompt.echo !== undefined) {
        const lps = ch.gen.promptLogprobs;
        send(ch.prompt.echo, null, lps ? { tokens: ch.prompt.tokens, logprobs: lps, offset } : null);
      } else if (c.shape.opensWithRole) send('', null, null);
    };
    for await (const d of untilAborted(ch.gen.deltas(), signal)) {
      open();
      token();
      send(d.text, null, d.logprobs.length ? { tokens: d.logprobs.map((l) => l.token), logprobs: d.logprobs, offset } : null);
    }
    const result = await ch.gen.result;
    open();
    send(null, result.finishReason, null);
    return result;
  };
  try {
    const results = await Promise.all(choices.map(one));
    const total = totalUsage(choices, results);
    if (c.body.stream_options?.include_usage) sse.send(frame([], { usage: usage(total) }));
    sse.done();
    return { status: 200, usage: total };
  } catch (err) {
    for (const ch of choices) ch.gen.cancel();
    const known = err instanceof LoraServeError;
    if (!known || err.status >= 500) log.error({ err }, 'stream failed');
    else log.info({ code: err.code }, 'stream ended early');
    sse.send({
      error: known
        ? { message: err.message, type: err.type, code: err.code, param: err.param }
        : { message: 'generation failed', type: 'server_error', code: 'internal_error', param: null },
    });
    sse.done();
    return { status: known ? err.status : 500 };
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
