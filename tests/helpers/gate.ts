import type { ForwardInput, ForwardOutput } from '../../src/engine/index.js';

interface HasForward {
  forward(input: ForwardInput): Promise<ForwardOutput>;
}

/**
 * Holds every forward pass of `target` (an engine, or Engine.prototype) until `open()`: requests
 * stay queued or mid-generation for exactly as long as a test needs, without timing.
 */
export function gateForward(target: HasForward): { open(): void; held(): number } {
  let isOpen = false;
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
    held: () => waiting.length,
  };
}
