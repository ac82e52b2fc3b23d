/**
 * The disk tier: one folder per adapter under the store root. Uploads are validated in full by
 * the caller before `put` is called; `put` writes to a temp folder (files, then a manifest sealing
 * their sizes and hashes), fsyncs, then swaps it in by rename, so no reader ever sees half an
 * adapter. A delete renames the folder away before removing it. Whatever moment a crash hits,
 * `open` finds either the old or the new adapter and removes the leftovers (see `recover`).
 * Adapters registered by path (vLLM's load_lora_adapter) are read where they lie and never
 * written or deleted.
 *
 * Several replicas may share one store folder (NFS, a ReadWriteMany volume). Each adapter folder
 * carries a version stamp written before its rename; `refresh` compares it on every admission
 * (one small read), so an upload, replace or delete by any replica is seen by the next request
 * here, and names this replica never saw are looked up on disk. Temp names carry their writer
 * (pid@host), so a replica starting up never removes a write another live replica is making.
 */
import { lstat, mkdir, open, readdir, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { join, resolve, sep } from 'node:path';
import {
  AdapterCorruptedError,
  AdapterLoadFailedError,
  AdapterNotFoundError,
  InvalidAdapterNameError,
  InvalidUploadError,
  PathOutsideRootError,
} from '../errors.js';
import { checkManifest, MANIFEST_FILE, manifestOf } from './adapter-manifest.js';
import { CONFIG_FILE, WEIGHTS_FILE, type AdapterFiles } from './peft-format.js';

export const ADAPTER_NAME = /^[a-z0-9][a-z0-9_.-]{0,63}$/;
/** A random id per write: what replicas sharing the store compare to notice a replace. */
export const VERSION_FILE = 'loraserve-version';

export function checkAdapterName(name: unknown): string {
  if (typeof name !== 'string' || !ADAPTER_NAME.test(name)) {
    throw new InvalidAdapterNameError(
      `adapter name ${JSON.stringify(name)} is invalid: use 1-64 characters of a-z, 0-9, "_", "." and "-", starting with a letter or digit`,
      { param: 'name' },
    );
  }
  return name;
}

export interface StoredAdapter {
  name: string;
  dir: string;
  /** Bumped on every replacement: cache entries of older versions are never served again. */
  version: number;
  /** The on-disk version stamp this entry was registered with (see `refresh`). */
  stamp: string;
  /** Registered by path: its files belong to someone else. */
  external: boolean;
  createdAt: number;
  sizeBytes: number;
  /** Written by this store with a manifest: its files passed validation, so a later failure to read them is corruption. */
  sealed: boolean;
}

/** What caches key one version of an adapter by. */
export const versionKey = (e: Pick<StoredAdapter, 'name' | 'version'>): string => `${e.name}@${e.version}`;

/**
 * Temp names in the store root: `.upload-<name>-<hex>` (being written), `.old-<name>-<hex>`
 * (replaced), `.deleted-<name>-<hex>`, each followed by `.<pid>@<host>` of the process writing it.
 */
const LEFTOVER = /^\.(upload|old|deleted)-(.+)-[0-9a-f]{12}(?:\.(\d+)@(.+))?$/;
const HOST = hostname().replace(/[^A-Za-z0-9.-]/g, '_');
const tempName = (kind: 'upload' | 'old' | 'deleted', name: string) =>
  `.${kind}-${name}-${randomBytes(6).toString('hex')}.${process.pid}@${HOST}`;
/** A leftover of another host is taken for abandoned once it is this old (no write takes that long). */
const FOREIGN_LEFTOVER_MS = 10 * 60_000;
/** How long `refresh` waits out another replica's replace (the moment between its two renames). */
const REPLACE_WAIT_MS = 2_000;

const alive = (pid: number) => {
  if (pid === process.pid) return false; // a restarted container reuses its pid: that writer is gone
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** What `open` found and did: leftovers of interrupted writes, and folders it could not register. */
export interface StoreStartup {
  removed: string[];
  restored: string[];
  skipped: Array<{ name: string; reason: string }>;
}

const isMissing = (err: unknown) => (err as NodeJS.ErrnoException)?.code === 'ENOENT' || (err as NodeJS.ErrnoException)?.code === 'ENOTDIR';

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

  readonly startup: StoreStartup = { removed: [], restored: [], skipped: [] };

  /** Opens the store, finishes or undoes writes a crash interrupted, and registers every adapter folder (nothing is loaded). */
  static async open(root: string): Promise<AdapterStore> {
    const store = new AdapterStore(resolve(root));
    await mkdir(store.root, { recursive: true });
    await store.recover();
    for (const entry of await readdir(store.root, { withFileTypes: true })) {
      if (!entry.isDirectory() || !ADAPTER_NAME.test(entry.name)) continue;
      const dir = join(store.root, entry.name);
      try {
        const size = await store.checkFiles(dir);
        const sealed = await lstat(join(dir, MANIFEST_FILE)).then(
          (st) => st.isFile(),
          () => false,
        );
        store.register(entry.name, dir, false, size, sealed, await store.stampOf(dir));
      } catch (err) {
        store.startup.skipped.push({ name: entry.name, reason: isMissing(err) ? 'a PEFT file is missing' : (err as Error).message });
      }
    }
    return store;
  }

  /**
   * A crash can leave: a `.upload-` folder (the write never became visible: removed), a `.deleted-`
   * folder (the delete was visible: removed), or a `.old-` folder, which is the previous version
   * of a replaced adapter: if the new one was renamed in it is removed, else it is put back.
   * Leftovers of a writer that may still be running (a live pid on this host, or another host's
   * within FOREIGN_LEFTOVER_MS) are left alone: on a shared store they are another replica's.
   */
  private async recover(): Promise<void> {
    const names = (await readdir(this.root)).sort();
    for (const file of names) {
      const m = LEFTOVER.exec(file);
      if (!m) continue;
      const [, kind, name, pid, host] = m;
      if (host !== undefined && (host === HOST ? alive(Number(pid)) : await this.young(file))) continue;
      const final = join(this.root, name!);
      if (
        kind === 'old' &&
        ADAPTER_NAME.test(name!) &&
        !(await lstat(final).then(
          () => true,
          () => false,
        ))
      ) {
        await rename(join(this.root, file), final);
        this.startup.restored.push(name!);
      } else {
        await rm(join(this.root, file), { recursive: true, force: true });
        this.startup.removed.push(file);
      }
    }
    if (this.startup.removed.length || this.startup.restored.length) await fsyncPath(this.root);
  }

  private async young(file: string): Promise<boolean> {
    const st = await stat(join(this.root, file)).catch(() => null);
    return st !== null && Date.now() - st.ctimeMs < FOREIGN_LEFTOVER_MS;
  }

  /** The folder's version stamp; folders written by hand (no stamp file) get one from their weights file's inode and mtime. */
  private async stampOf(dir: string): Promise<string> {
    try {
      return await readFile(join(dir, VERSION_FILE), 'utf8');
    } catch (err) {
      if (!isMissing(err)) throw err;
      const st = await stat(join(dir, WEIGHTS_FILE));
      return `stat:${st.ino}:${st.size}:${st.mtimeMs}`;
    }
  }

  /**
   * Brings one name up to date with the shared folder (one small read when nothing changed): a
   * name written by another replica is registered, a replaced one re-registered under a new
   * version, a deleted one forgotten. Returns the current entry, if any.
   */
  async refresh(name: string): Promise<StoredAdapter | undefined> {
    const known = this.entries.get(name);
    if (known?.external || !ADAPTER_NAME.test(name)) return known;
    const dir = join(this.root, name);
    const deadline = Date.now() + REPLACE_WAIT_MS;
    for (;;) {
      let stamp: string;
      try {
        stamp = await this.stampOf(dir);
      } catch (err) {
        if (!isMissing(err)) throw err;
        // Between the two renames of another replica's replace the name is briefly absent.
        if (Date.now() < deadline && (await this.replacing(name))) {
          await sleep(5);
          continue;
        }
        if (this.entries.get(name) === known) this.entries.delete(name);
        return undefined;
      }
      const current = this.entries.get(name);
      if (current?.stamp === stamp) return current;
      try {
        const size = await this.checkFiles(dir);
        const sealed = await lstat(join(dir, MANIFEST_FILE)).then(
          (st) => st.isFile(),
          () => false,
        );
        return this.register(name, dir, false, size, sealed, stamp);
      } catch (err) {
        if (!isMissing(err) || Date.now() >= deadline) throw err;
      }
    }
  }

  private async replacing(name: string): Promise<boolean> {
    return (await readdir(this.root)).some((f) => LEFTOVER.exec(f)?.[1] === 'old' && LEFTOVER.exec(f)?.[2] === name);
  }

  /** Re-reads the whole folder (for listings): every name on disk registered and current, every vanished one forgotten. */
  async rescan(): Promise<StoredAdapter[]> {
    const onDisk = (await readdir(this.root, { withFileTypes: true }))
      .filter((e) => e.isDirectory() && ADAPTER_NAME.test(e.name))
      .map((e) => e.name);
    const gone = [...this.entries.values()].filter((e) => !e.external && !onDisk.includes(e.name)).map((e) => e.name);
    for (const name of [...onDisk, ...gone]) await this.refresh(name).catch(() => undefined);
    return this.list();
  }

  private register(name: string, dir: string, external: boolean, sizeBytes: number, sealed: boolean, stamp: string): StoredAdapter {
    const entry = { name, dir, version: this.nextVersion++, stamp, external, createdAt: Math.floor(Date.now() / 1000), sizeBytes, sealed };
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

  /**
   * An adapter's files. A sealed adapter whose files are gone or differ from their manifest
   * throws AdapterCorruptedError; files that vanish because the adapter was replaced or deleted
   * meanwhile throw the same, and the cache tells the two apart by the entry's version.
   */
  async read(entry: StoredAdapter): Promise<AdapterFiles> {
    try {
      const files = await this.readFolder(entry);
      if (!(await this.changed(entry))) return files;
    } catch (err) {
      if (!(await this.changed(entry))) throw err;
    }
    // Another replica replaced or deleted it while we read: the entry is re-registered (or
    // forgotten), so the cache sees a new version and loads that instead.
    await this.refresh(entry.name);
    throw new AdapterLoadFailedError(`adapter "${entry.name}" was replaced or deleted while it was being read`);
  }

  private async changed(entry: StoredAdapter): Promise<boolean> {
    if (entry.external) return false;
    return (await this.stampOf(entry.dir).catch(() => null)) !== entry.stamp;
  }

  private async readFolder(entry: StoredAdapter): Promise<AdapterFiles> {
    let files: AdapterFiles;
    let manifest: string | null = null;
    try {
      await this.checkFiles(entry.dir);
      const [config, weights] = await Promise.all([
        readFile(join(entry.dir, CONFIG_FILE), 'utf8'),
        readFile(join(entry.dir, WEIGHTS_FILE)),
      ]);
      files = { config, weights };
      if (entry.sealed) manifest = await readFile(join(entry.dir, MANIFEST_FILE), 'utf8');
    } catch (cause) {
      if (!isMissing(cause) && !(cause instanceof InvalidUploadError)) throw cause;
      const what = cause instanceof InvalidUploadError ? 'a PEFT file is no longer a regular file' : 'a file is missing';
      throw new AdapterCorruptedError(`adapter "${entry.name}" is damaged on disk: ${what}; upload the adapter again`, { cause });
    }
    if (manifest !== null) checkManifest(entry.name, manifest, { [CONFIG_FILE]: files.config, [WEIGHTS_FILE]: files.weights });
    return files;
  }

  /** Writes (or replaces) an adapter atomically; the caller has validated the files. */
  async put(name: string, files: AdapterFiles): Promise<StoredAdapter> {
    checkAdapterName(name);
    return this.serial(name, () => this.write(name, files));
  }

  private async write(name: string, files: AdapterFiles): Promise<StoredAdapter> {
    const tmp = join(this.root, tempName('upload', name));
    const final = join(this.root, name);
    const stamp = randomBytes(16).toString('hex');
    await mkdir(tmp);
    try {
      const contents: Array<[string, Uint8Array | string]> = [
        [CONFIG_FILE, files.config],
        [WEIGHTS_FILE, files.weights],
      ];
      contents.push([MANIFEST_FILE, manifestOf(Object.fromEntries(contents))], [VERSION_FILE, stamp]);
      for (const [file, data] of contents) {
        const fh = await open(join(tmp, file), 'wx');
        try {
          await fh.writeFile(data);
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      await fsyncPath(tmp);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    // From here a crash is repaired by `recover`: before the second rename the old version is
    // put back, after it the new one stays. Another replica writing the same name can rename its
    // version in between our two renames; then we move that one aside too and try again, so the
    // last rename wins whole and nothing is ever mixed.
    const previous = this.entries.get(name);
    const trashes = [join(this.root, tempName('old', name))];
    let moved = false;
    for (let attempt = 0; ; attempt++) {
      const hadFolder = await lstat(final).then(
        (s) => s.isDirectory(),
        () => false,
      );
      if (hadFolder && !previous?.external) {
        if (moved) trashes.push(join(this.root, tempName('old', name)));
        // ENOENT: the other writer moved it aside first.
        moved = await rename(final, trashes.at(-1)!).then(
          () => true,
          (err) => (isMissing(err) ? false : Promise.reject(err)),
        );
      }
      try {
        await rename(tmp, final);
        break;
      } catch (err) {
        const raced = ['ENOTEMPTY', 'EEXIST'].includes((err as NodeJS.ErrnoException).code ?? '');
        if (raced && attempt < 10) continue;
        if (moved) await rename(trashes.at(-1)!, final).catch(() => {});
        await rm(tmp, { recursive: true, force: true });
        throw err;
      }
    }
    await fsyncPath(this.root);
    for (const trash of trashes) await rm(trash, { recursive: true, force: true });
    return this.register(name, final, false, Buffer.byteLength(files.config) + files.weights.byteLength, true, stamp);
  }

  /** Registers an adapter folder outside the store, which must lie under `allowedRoot`. */
  async registerPath(name: string, path: string, allowedRoot: string | null): Promise<StoredAdapter> {
    checkAdapterName(name);
    const { dir, size } = await this.resolvePath(path, allowedRoot);
    return this.register(name, dir, true, size, false, 'external');
  }

  /** The real folder a load-by-path names, once it is checked to lie under the root and hold both PEFT files. */
  async resolvePath(path: string, allowedRoot: string | null): Promise<{ dir: string; size: number }> {
    if (!allowedRoot)
      throw new PathOutsideRootError('loading adapters by path is disabled; start the server with --lora-root', { param: 'lora_path' });
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
    const size = await this.checkFiles(real).catch((cause) => {
      if (!isMissing(cause)) throw cause;
      throw new AdapterNotFoundError(`lora_path ${JSON.stringify(path)} holds no ${CONFIG_FILE} and ${WEIGHTS_FILE}`, {
        cause,
        param: 'lora_path',
      });
    });
    return { dir: real, size };
  }

  /** Removes an adapter (its folder too, unless it was registered by path). */
  async delete(name: string): Promise<StoredAdapter> {
    return this.serial(name, async () => {
      const entry = this.require(name);
      this.entries.delete(name);
      if (entry.external) return entry;
      // One rename makes the delete durable; a crash before the rm leaves a `.deleted-` folder that `open` removes.
      const trash = join(this.root, tempName('deleted', name));
      try {
        await rename(entry.dir, trash);
      } catch (err) {
        if (isMissing(err)) return entry;
        throw err;
      }
      await fsyncPath(this.root);
      await rm(trash, { recursive: true, force: true });
      return entry;
    });
  }
}
