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

  private constructor(private readonly path: string, private readonly mixes: Map<string, SavedMix>) {}

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
    return this.change(() => this.mixes.set(name, mix)).then(() => mix);
  }

  delete(name: string): Promise<void> {
    return this.change(() => this.mixes.delete(name));
  }

  /** Applies a change and persists the whole set; writes run one at a time, in order. */
  private change(apply: () => unknown): Promise<void> {
    apply();
    const snapshot = JSON.stringify(this.list(), null, 2);
    const run = this.writing.then(() => writeFileAtomic(this.path, snapshot));
    this.writing = run.catch(() => {});
    return run;
  }
}
