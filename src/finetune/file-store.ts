/**
 * OpenAI's files, per tenant: `<root>/<tenant key>/<id>.data` holds the bytes and `<id>.json`
 * the metadata. Both are written with the adapter store's rules (temp name, fsync, rename), the
 * content first: the metadata file is what makes a file exist, so a crash between the two leaves
 * an orphan that `open` removes, never a listed file without its bytes. A delete removes the
 * metadata first for the same reason. A tenant's folder is named by a hash of the tenant, so any
 * tenant name is a safe path, and ids are checked before they touch a path.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { FileNotFoundError } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-write.js';

export type FilePurpose = 'fine-tune' | 'fine-tune-results';

export interface StoredFile {
  id: string;
  object: 'file';
  bytes: number;
  created_at: number;
  filename: string;
  purpose: FilePurpose;
  status: 'processed';
  status_details: null;
}

const FILE_ID = /^file-[0-9a-f]{24}$/;
const META = /^(file-[0-9a-f]{24})\.json$/;

/** A folder name for a tenant: any tenant name maps to a fixed-length safe one. */
export const tenantKey = (tenant: string): string => createHash('sha256').update(tenant).digest('hex').slice(0, 24);

export class FileStore {
  private constructor(private readonly root: string) {}

  /**
   * Opens the store and removes what interrupted writes left: temp files and content without
   * metadata. Folders are made on the first upload: a server that never fine-tunes leaves no trace.
   */
  static async open(root: string): Promise<FileStore> {
    for (const tenant of await readdir(root, { withFileTypes: true }).catch(() => [])) {
      if (!tenant.isDirectory()) continue;
      const dir = join(root, tenant.name);
      const names = await readdir(dir);
      const ids = new Set(names.flatMap((n) => META.exec(n)?.[1] ?? []));
      for (const n of names) {
        const orphan = n.endsWith('.data') && !ids.has(n.slice(0, -'.data'.length));
        if (n.endsWith('.tmp') || orphan) await rm(join(dir, n), { force: true });
      }
    }
    return new FileStore(root);
  }

  private dir(tenant: string): string {
    return join(this.root, tenantKey(tenant));
  }

  /** Stores a file (already validated by the caller) and returns its metadata. */
  async put(tenant: string, filename: string, purpose: FilePurpose, data: Uint8Array | string): Promise<StoredFile> {
    const dir = this.dir(tenant);
    await mkdir(dir, { recursive: true });
    const file: StoredFile = {
      // The creation time leads the id, so ids sort newest first within one second too.
      id: `file-${Date.now().toString(16).padStart(12, '0')}${randomBytes(6).toString('hex')}`,
      object: 'file',
      bytes: Buffer.byteLength(data),
      created_at: Math.floor(Date.now() / 1000),
      filename,
      purpose,
      status: 'processed',
      status_details: null,
    };
    await writeFileAtomic(join(dir, `${file.id}.data`), data);
    await writeFileAtomic(join(dir, `${file.id}.json`), JSON.stringify(file));
    return file;
  }

  /** The tenant's files, newest first. */
  async list(tenant: string, purpose?: string): Promise<StoredFile[]> {
    const names = await readdir(this.dir(tenant)).catch(() => [] as string[]);
    const files = await Promise.all(names.flatMap((n) => (META.test(n) ? [this.meta(tenant, n.slice(0, -'.json'.length))] : [])));
    return files
      .filter((f): f is StoredFile => f !== null && (purpose === undefined || f.purpose === purpose))
      .sort((a, b) => b.id.localeCompare(a.id));
  }

  private async meta(tenant: string, id: string): Promise<StoredFile | null> {
    if (!FILE_ID.test(id)) return null;
    try {
      return JSON.parse(await readFile(join(this.dir(tenant), `${id}.json`), 'utf8')) as StoredFile;
    } catch {
      return null;
    }
  }

  /** The file's metadata; another tenant's file is "not found" exactly as a missing one. */
  async get(tenant: string, id: string, param = 'file_id'): Promise<StoredFile> {
    const file = await this.meta(tenant, id);
    if (!file) throw new FileNotFoundError(`no file with id "${id}"`, { param });
    return file;
  }

  /** Where the file's bytes lie (for a job's snapshot). */
  async path(tenant: string, id: string, param = 'file_id'): Promise<string> {
    await this.get(tenant, id, param);
    return join(this.dir(tenant), `${id}.data`);
  }

  async content(tenant: string, id: string): Promise<Buffer> {
    return readFile(await this.path(tenant, id));
  }

  async delete(tenant: string, id: string): Promise<StoredFile> {
    const file = await this.get(tenant, id);
    await rm(join(this.dir(tenant), `${id}.json`));
    await rm(join(this.dir(tenant), `${id}.data`), { force: true });
    return file;
  }
}
