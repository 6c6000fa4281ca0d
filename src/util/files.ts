/**
 * Small state files written so that a crash or power cut leaves either the
 * old content or the new, never a mix: written to a temporary file, fsynced,
 * renamed over the old one, and the folder fsynced so the rename itself
 * survives. Used for the sequence reservation, command nonces and the
 * updater's state.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Write `text` to `file` atomically; on failure the temporary file is removed and the error thrown. */
export function writeFileAtomicSync(file: string, text: string): void {
  // One fixed name per file: a failed write leaves no trail of temporary files.
  const tmp = join(dirname(file), `.${basename(file)}.tmp`);
  let fd = -1;
  try {
    fd = openSync(tmp, 'w');
    writeSync(fd, text);
    fsyncSync(fd);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, file);
  } catch (err) {
    if (fd >= 0) closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  syncDir(dirname(file));
}

/** fsync a directory so a rename in it survives a power cut. */
export function syncDir(dir: string): void {
  let fd = -1;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on directories; the rename is still atomic.
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

/** The system or SQLite code of an error (ENOSPC, SQLITE_BUSY, ...), for logs, reasons and decisions; never its wording. */
export function errorCode(err: unknown): string {
  const code = err && typeof err === 'object' ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : 'unknown';
}
