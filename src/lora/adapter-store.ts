/**
 * The disk tier: one folder per adapter under the store root. Uploads are validated in full by
 * the caller before `put` is called; `put` writes to a temp folder, fsyncs, then swaps it in, so
 * no reader ever sees half an adapter. Adapters registered by path (vLLM's load_lora_adapter)
 * are read where they lie and never written or deleted.
 */
import { lstat, mkdir, open, readdir, readFile, realpath, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join, resolve, sep } from 'node:path';
import { AdapterNotFoundError, InvalidAdapterNameError, InvalidUploadError, PathOutsideRootError } from '../errors.js';
import { CONFIG_FILE, WEIGHTS_FILE, type AdapterFiles } from './peft-format.js';

export const ADAPTER_NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;

export function checkAdapterName(name: unknown): string {
  if (typeof name !== 'string' || !ADAPTER_NAME.test(name)) {
    throw new InvalidAdapterNameError(`adapter name ${JSON.stringify(name)} is invalid: use 1-64 characters of a-z, 0-9, "_", "." and "-", starting with a letter or digit`, { param: 'name' });
  }
  return name;
}

export interface StoredAdapter {
  name: string;
  dir: string;
  /** Bumped on every replacement: cache entries of older versions are never served again. */
  version: number;
  /** Registered by path: its files belong to someone else. */
  external: boolean;
  createdAt: number;
  sizeBytes: number;
}

/** What caches key one version of an adapter by. */
export const versionKey = (e: Pick<StoredAdapter, 'name' | 'version'>): string => `${e.name}@${e.version}`;

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export class AdapterStore {
  private readonly entries = new Map<string, StoredAdapter>();
  private nextVersion = 1;
  /** Writes to one name run one at a time. */
  private readonly locks = new Map<string, Promise<unknown>>();

  private serial<T>(name: string, work: () => Promise<T>): Promise<T> {
    const run = (this.locks.get(name) ?? Promise.resolve()).then(work, work);
    const settled = run.catch(() => {});
    this.locks.set(name, settled);
    void settled.then(() => this.locks.get(name) === settled && this.locks.delete(name));
    return run;
  }

  private constructor(readonly root: string) {}

  /** Opens the store and registers every adapter folder in it (nothing is loaded). */
  static async open(root: string): Promise<AdapterStore> {
    const store = new AdapterStore(resolve(root));
    await mkdir(store.root, { recursive: true });
    for (const entry of await readdir(store.root, { withFileTypes: true })) {
      if (!entry.isDirectory() || !ADAPTER_NAME.test(entry.name)) continue;
      const dir = join(store.root, entry.name);
      const size = await store.checkFiles(dir).catch(() => null);
      if (size !== null) store.register(entry.name, dir, false, size);
    }
    return store;
  }

  private register(name: string, dir: string, external: boolean, sizeBytes: number): StoredAdapter {
    const entry = { name, dir, version: this.nextVersion++, external, createdAt: Math.floor(Date.now() / 1000), sizeBytes };
    this.entries.set(name, entry);
    return entry;
  }

  /** Both files present as regular files (never symlinks); returns their total size. */
  private async checkFiles(dir: string): Promise<number> {
    let size = 0;
    for (const f of [CONFIG_FILE, WEIGHTS_FILE]) {
      const st = await lstat(join(dir, f));
      if (!st.isFile()) throw new InvalidUploadError(`${f} in ${dir} is not a regular file`);
      size += st.size;
    }
    return size;
  }

  list(): StoredAdapter[] {
    return [...this.entries.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): StoredAdapter | undefined {
    return this.entries.get(name);
  }

  require(name: string): StoredAdapter {
    const e = this.entries.get(name);
    if (!e) throw new AdapterNotFoundError(`adapter "${name}" does not exist`, { param: 'model' });
    return e;
  }

  async read(entry: StoredAdapter): Promise<AdapterFiles> {
    await this.checkFiles(entry.dir);
    const [config, weights] = await Promise.all([readFile(join(entry.dir, CONFIG_FILE), 'utf8'), readFile(join(entry.dir, WEIGHTS_FILE))]);
    return { config, weights };
  }

  /** Writes (or replaces) an adapter atomically; the caller has validated the files. */
  async put(name: string, files: AdapterFiles): Promise<StoredAdapter> {
    checkAdapterName(name);
    return this.serial(name, () => this.write(name, files));
  }

  private async write(name: string, files: AdapterFiles): Promise<StoredAdapter> {
    const tmp = join(this.root, `.upload-${name}-${randomBytes(6).toString('hex')}`);
    const trash = join(this.root, `.old-${name}-${randomBytes(6).toString('hex')}`);
    const final = join(this.root, name);
    await mkdir(tmp);
    try {
      for (const [file, data] of [[CONFIG_FILE, files.config], [WEIGHTS_FILE, files.weights]] as const) {
        const fh = await open(join(tmp, file), 'wx');
        try {
          await fh.writeFile(data);
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      await fsyncPath(tmp);
      const previous = this.entries.get(name);
      const hadFolder = await lstat(final).then((s) => s.isDirectory(), () => false);
      if (hadFolder && !previous?.external) await rename(final, trash);
      await rename(tmp, final);
      await fsyncPath(this.root);
      await rm(trash, { recursive: true, force: true });
      return this.register(name, final, false, Buffer.byteLength(files.config) + files.weights.byteLength);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /** Registers an adapter folder outside the store, which must lie under `allowedRoot`. */
  async registerPath(name: string, path: string, allowedRoot: string | null): Promise<StoredAdapter> {
    checkAdapterName(name);
    if (!allowedRoot) throw new PathOutsideRootError('loading adapters by path is disabled; start the server with --lora-root', { param: 'lora_path' });
    let real: string;
    let rootReal: string;
    try {
      rootReal = await realpath(allowedRoot);
      real = await realpath(resolve(allowedRoot, path));
    } catch (cause) {
      throw new AdapterNotFoundError(`lora_path ${JSON.stringify(path)} does not exist`, { cause, param: 'lora_path' });
    }
    if (real !== rootReal && !real.startsWith(rootReal + sep)) {
      throw new PathOutsideRootError(`lora_path ${JSON.stringify(path)} lies outside the allowed root`, { param: 'lora_path' });
    }
    const size = await this.checkFiles(real);
    return this.register(name, real, true, size);
  }

  /** Removes an adapter (its folder too, unless it was registered by path). */
  async delete(name: string): Promise<StoredAdapter> {
    return this.serial(name, async () => {
      const entry = this.require(name);
      this.entries.delete(name);
      if (!entry.external) await rm(entry.dir, { recursive: true, force: true });
      return entry;
    });
  }
}
