/**
 * Per-device sequence numbers that never repeat: not across restarts, not
 * after a corrupt spool was moved aside, not after a power cut.
 *
 * Numbers are handed out from blocks reserved in a small file beside the
 * spool (written to a temporary file, fsynced, renamed): a block is on disk
 * before its first number is used, so after any crash the next start begins
 * above every number that could have been used. A crash wastes at most the
 * rest of one block, and the spool's own highest number is a second floor.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

export class SequenceAllocator {
  private next: number;
  private reservedEnd: number;

  /**
   * @param file where the reservation is kept
   * @param floor one above the highest number known to be used (the spool's max seq + 1)
   */
  constructor(
    private readonly file: string,
    floor: number,
    private readonly blockSize = 100_000,
  ) {
    const stored = SequenceAllocator.readReservation(file);
    this.next = Math.max(stored, floor, 1);
    this.reservedEnd = this.next;
  }

  static readReservation(file: string): number {
    try {
      const v = JSON.parse(readFileSync(file, 'utf8')) as { reservedEnd?: unknown };
      return typeof v.reservedEnd === 'number' && Number.isSafeInteger(v.reservedEnd) ? v.reservedEnd : 0;
    } catch {
      return 0;
    }
  }

  /** The next number; reserves a new block first when the current one is used up. */
  take(): number {
    if (this.next >= this.reservedEnd) this.reserve();
    return this.next++;
  }

  /** The number take() would return next. */
  peek(): number {
    return this.next;
  }

  private reserve(): void {
    const end = this.next + this.blockSize;
    const tmp = join(dirname(this.file), `.${Date.now()}.seq.tmp`);
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, JSON.stringify({ reservedEnd: end }));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file);
    syncDir(dirname(this.file));
    this.reservedEnd = end;
  }
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
