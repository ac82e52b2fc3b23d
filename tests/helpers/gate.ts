import type { ForwardInput, ForwardOutput } from '../../src/engine/index.js';

interface HasForward {
  forward(input: ForwardInput): Promise<ForwardOutput>;
}

export interface Gate {
  open(): void;
  close(): void;
  /** Forward passes waiting at the gate now. */
  held(): number;
}

/**
 * Holds the forward passes of `target` (an engine, or Engine.prototype) while closed: requests
 * stay queued or mid-generation for exactly as long as a test needs, without timing.
 */
export function gateForward(target: HasForward, initiallyOpen = false): Gate {
  let isOpen = initiallyOpen;
  const waiting: Array<() => void> = [];
  const forward = target.forward;
  target.forward = async function gated(this: HasForward, input: ForwardInput) {
    if (!isOpen) await new Promise<void>((resolve) => waiting.push(resolve));
    return forward.call(this, input);
  };
  return {
    open() {
      isOpen = true;
      for (const w of waiting.splice(0)) w();
    },
    close() {
      isOpen = false;
    },
    held: () => waiting.length,
  };
}

/** Resolves once `condition()` holds, checking after every turn of the event loop. */
export async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve));
}
