import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh folder under the system temp dir; whoever asks for it removes it. */
export function tempDir(prefix = 'loraserve-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
