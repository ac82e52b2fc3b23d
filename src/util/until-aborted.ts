/**
 * Iterates `source` until `signal` aborts, then throws the abort reason at once, without waiting
 * for the source's next item: a stream whose engine is mid-step can still be answered now. The
 * source is left to end on its own (its producer sees the same signal).
 */
export async function* untilAborted<T>(source: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  const aborted = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
  aborted.catch(() => {});
  for (;;) {
    const next = await Promise.race([it.next(), aborted]);
    if (next.done) return;
    yield next.value;
  }
}
