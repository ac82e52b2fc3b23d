import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, basename, join } from 'node:path';

/**
 * Writes to a temp name beside the target, fsyncs, then renames: readers never see half a file.
 * `data` may be a list of chunks, written in order without joining them, or a function that
 * writes the file through its handle (to produce large files piece by piece).
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string | Uint8Array[] | ((file: FileHandle) => Promise<void>),
): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'w');
  try {
    if (typeof data === 'function') await data(fh);
    // writeFile on a handle continues at the current position, so chunks land one after another.
    else for (const chunk of Array.isArray(data) ? data : [data]) await fh.writeFile(chunk);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Writes all of `bytes` at `position` (a single write may stop short). */
export async function writeAt(file: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    const { bytesWritten } = await file.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}
