/**
 * Saved adapter mixes: a name standing for a weighted list of adapters (`POST /v1/adapters/{name}/mix`).
 * No weights are written: the whole store is one small JSON file beside the adapter folders,
 * replaced atomically on every change. Its file name starts with a dot, which no adapter name can.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.js';

export interface MixMember {
  name: string;
  weight: number;
}

export interface SavedMix {
  name: string;
  members: MixMember[];
  createdAt: number;
}

export const MIXES_FILE = '.mixes.json';

export class MixStore {
  private writing: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly path: string,
    private readonly mixes: Map<string, SavedMix>,
  ) {}

  static async open(root: string): Promise<MixStore> {
    const path = join(root, MIXES_FILE);
    let saved: SavedMix[] = [];
    try {
      saved = JSON.parse(await readFile(path, 'utf8')) as SavedMix[];
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return new MixStore(path, new Map(saved.map((m) => [m.name, m])));
  }

  get(name: string): SavedMix | undefined {
    return this.mixes.get(name);
  }

  list(): SavedMix[] {
    return [...this.mixes.values()];
  }

  put(name: string, members: MixMember[]): Promise<SavedMix> {
    const mix = { name, members, createdAt: Math.floor(Date.now() / 1000) };
    return this.change((next) => next.set(name, mix)).then(() => mix);
  }

  delete(name: string): Promise<void> {
    return this.change((next) => next.delete(name));
  }

  /**
   * Persists the set with one change applied, then serves it: a failed write leaves both the file
   * and what is served as they were. Changes run one at a time, in order.
   */
  private change(apply: (next: Map<string, SavedMix>) => unknown): Promise<void> {
    const run = this.writing.then(async () => {
      const next = new Map(this.mixes);
      apply(next);
      await writeFileAtomic(this.path, JSON.stringify([...next.values()], null, 2));
      this.mixes.clear();
      for (const [k, v] of next) this.mixes.set(k, v);
    });
    this.writing = run.catch(() => {});
    return run;
  }
}
