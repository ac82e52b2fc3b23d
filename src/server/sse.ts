/**
 * A Server-Sent Events response: the reply is taken over from Fastify (keeping the headers set on
 * it so far), each frame is `data: <json>`, and a finished stream ends with `data: [DONE]` as OpenAI's do.
 */
import type { FastifyReply } from 'fastify';

export class SseWriter {
  private readonly res: FastifyReply['raw'];

  constructor(reply: FastifyReply, requestId: string) {
    reply.hijack();
    this.res = reply.raw;
    const kept = Object.entries(reply.getHeaders()).filter((e): e is [string, string | number | string[]] => e[1] !== undefined);
    this.res.writeHead(200, {
      ...Object.fromEntries(kept),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-request-id': requestId,
    });
    // The status goes out now; the first event only with the first token.
    this.res.flushHeaders();
  }

  send(data: unknown): void {
    this.res.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  done(): void {
    this.res.write('data: [DONE]\n\n');
  }

  end(): void {
    this.res.end();
  }
}
