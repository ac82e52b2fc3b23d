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
import type { RequestTrack } from './metrics.js';
import type { Admission } from './rate-limit.js';
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

export async function serveCompletion(serving: Serving, request: FastifyRequest, reply: FastifyReply, c: Completion): Promise<unknown> {
  // OpenAI's end-user id: kept in the request log, so abuse can be traced to a client's user.
  if (c.body.user) request.log.info({ user: c.body.user, model: c.model.id }, 'completion for an end user');
  const track = serving.metrics.track(c.model.id, c.endpoint);
  const param = c.endpoint === 'chat' ? 'messages' : 'prompt';
  const logprobs = c.logprobs === null ? {} : { logprobs: c.logprobs };
  const reqs = c.prompts.map((p) => ({
    ...generateRequest(
      c.body,
      p.tokens,
      { ...serving.config, maxContext: serving.engine.options.maxContext },
      param,
      serving.samplingDefaults,
    ),
    ...logprobs,
    promptLogprobs: c.logprobs !== null && p.echo !== undefined,
  }));
  // Compiled after the cheap checks above, so a request they refuse never pays for a grammar.
  const constraint = c.tools?.grammar
    ? await serving.structuredOutput.toolCalls(c.tools.grammar)
    : await serving.structuredOutput.constraint(c.body.response_format);
  const tenant = request.caller.tenant;
  let admission: Admission;
  try {
    admission = serving.admit(request.caller, {
      promptTokens: c.prompts.reduce((sum, p) => sum + p.tokens.length, 0),
      sequences: reqs.length * (c.body.n ?? 1),
    });
  } catch (err) {
    track.done((err as { status?: number }).status ?? 500);
    throw err;
  }
  reply.headers(admission.headers);
  const limit = requestLimit(serving, reply);
  const choices: Choice[] = [];
  // The tenant's in-flight count and token bucket are settled once every generation has ended.
  const settle = () =>
    void Promise.allSettled(choices.map((ch) => ch.gen.result)).then((rs) =>
      admission.settle(rs.reduce((sum, r) => sum + (r.status === 'fulfilled' ? r.value.completionTokens : 0), 0)),
    );
  try {
    for (const [i, req] of reqs.entries()) {
      const constrained = { ...req, tenant, ...(constraint ? { constraint } : {}) };
      for (const gen of await serving.startChoices(c.model, constrained, c.body.n ?? 1, limit.signal))
        choices.push({ prompt: c.prompts[i]!, gen });
    }
  } catch (err) {
    for (const ch of choices) ch.gen.cancel();
    settle();
    limit.clear();
    const reason = limit.reason() ?? requestError(err, param);
    const status = (reason as { status?: number }).status ?? 500;
    if (status === 429) serving.limiter.refused(tenant);
    track.done(status);
    throw reason;
  }
  const id = `${c.shape.idPrefix}${randomUUID().replaceAll('-', '')}`;
  const created = Math.floor(Date.now() / 1000);
  const wire = new LogprobWire(serving.engine.tokenizer);
  try {
    if (!c.body.stream) {
      let results: GenerationResult[];
      try {
        results = await Promise.all(
          choices.map(async (ch) => {
            for await (const _ of untilAborted(ch.gen, limit.signal)) track.token();
            return ch.gen.result;
          }),
        );
      } catch (err) {
        for (const ch of choices) ch.gen.cancel();
        track.done((err as { status?: number }).status ?? 500);
        throw err;
      }
      const total = totalUsage(choices, results);
      track.done(200, total);
      return {
        id,
        object: c.shape.object,
        created,
        model: c.model.id,
        choices: results.map((r, i) => {
          const echo = choices[i]!.prompt.echo;
          const logprobs = c.logprobs === null ? null : c.shape.logprobs(wire, resultSpan(choices[i]!, r));
          if (c.tools) return toolCallChoice(i, r.text, r.finishReason, logprobs);
          return c.shape.choice(i, (echo ?? '') + r.text, r.finishReason, logprobs);
        }),
        usage: usage(total),
      };
    }
    await stream(new SseWriter(reply, String(request.id)), choices, limit.signal, c, { id, created, wire }, track, request.log);
    return reply;
  } finally {
    settle();
    limit.clear();
  }
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
function totalUsage(
  choices: Choice[],
  results: GenerationResult[],
): { promptTokens: number; completionTokens: number; cachedTokens: number } {
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
 * becomes an error event (the status line is already sent).
 */
async function stream(
  sse: SseWriter,
  choices: Choice[],
  signal: AbortSignal,
  c: Completion,
  ctx: { id: string; created: number; wire: LogprobWire },
  track: RequestTrack,
  log: FastifyBaseLogger,
): Promise<void> {
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
      track.token();
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
    track.done(200, total);
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
