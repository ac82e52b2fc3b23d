/** A streamed completion over a real socket, event by event. */
export interface SseStream {
  status: number;
  /** `data:` payloads so far (`[DONE]` included). */
  events: string[];
  /** Resolves once `n` events have arrived. */
  received(n: number): Promise<void>;
  /** Resolves with every event when the server ends the response (rejects if the socket breaks). */
  done: Promise<string[]>;
  /** Closes the connection from the client side. */
  abort(): void;
}

export async function openStream(url: string, body: unknown, headers: Record<string, string> = {}): Promise<SseStream> {
  const controller = new AbortController();
  const res = await fetch(url, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...headers },
    signal: controller.signal,
  });
  const events: string[] = [];
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const wake = () => {
    for (const w of [...waiters]) if (events.length >= w.n) waiters.splice(waiters.indexOf(w), 1) && w.resolve();
  };
  const done = (async () => {
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (event.startsWith('data: ')) events.push(event.slice(6));
      }
      wake();
    }
    return events;
  })();
  done.catch(() => {});
  return {
    status: res.status,
    events,
    received: (n) => {
      if (events.length >= n) return Promise.resolve();
      const enough = new Promise<void>((resolve) => waiters.push({ n, resolve }));
      const ended = done.then(() => {
        if (events.length < n) throw new Error(`the stream ended after ${events.length} events, before ${n}: ${events.join(' | ')}`);
      });
      return Promise.race([enough, ended]);
    },
    done,
    abort: () => controller.abort(),
  };
}
