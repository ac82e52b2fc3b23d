/**
 * Picks the TensorFlow.js backend for training: the native bindings (`@tensorflow/tfjs-node-gpu`,
 * `@tensorflow/tfjs-node`) when they are installed — they are optional because their install
 * downloads libtensorflow — and otherwise the WebAssembly backend, which installs anywhere.
 */
import * as tf from '@tensorflow/tfjs';

export type Tf = typeof tf;
let chosen: string | null = null;

/**
 * `threads` bounds the WebAssembly backend's thread pool (its threaded build; a fine-tuning worker
 * keeps to its budget); it applies to the first call only, which picks the backend.
 */
export async function initTf(threads?: number): Promise<{ tf: Tf; backend: string }> {
  if (chosen) return { tf, backend: chosen };
  for (const native of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(native);
      chosen = `${tf.getBackend()} (${native})`;
      return { tf, backend: chosen };
    } catch {
      // not installed: try the next
    }
  }
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  if (threads !== undefined) wasm.setThreadsCount(threads);
  await tf.setBackend('wasm');
  await tf.ready();
  chosen = 'wasm (@tensorflow/tfjs-backend-wasm)';
  return { tf, backend: chosen };
}

export { tf };
