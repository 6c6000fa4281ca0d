/**
 * Per-device sequence numbers that never repeat: not across restarts, not
 * after a corrupt spool was moved aside, not after a power cut.
 *
 * Numbers are handed out from blocks reserved in a small file beside the
 * spool (written to a temporary file, fsynced, renamed): a block is on disk
 * before its first number is used, so after any crash the next start begins
 * above every number that could have been used. A crash wastes at most the
 * rest of one block. The spool is a second floor: every commit also records
 * the highest number it wrote (meta `seq_high`), so a drained spool still
 * knows where numbering stands.
 *
 * A full disk never stops numbering. When a block cannot be reserved the
 * allocator goes on past the reservation: a number can only reach the cloud
 * after the spool committed it, and that commit records it as the spool's
 * floor, so a number is never reused after it left the device. The
 * reservation is tried again at every flush until it succeeds.
 */
import { readFileSync } from 'node:fs';
import { writeFileAtomicSync } from '../util/files.js';

/** What the reservation file said at start. */
export type ReservationState = 'ok' | 'missing' | 'unreadable';

export interface Reservation {
  reservedEnd: number;
  state: ReservationState;
  error: string | null;
}

export class SequenceAllocator {
  private next: number;
  private reservedEnd: number;
  /** Why the last reservation failed (a full disk); null while reservations succeed. */
  reserveError: string | null = null;

  /**
   * @param file where the reservation is kept
   * @param floor one above the highest number known to be used
   * @param onReserveError told once per failing spell (and again after a success)
   */
  constructor(
    private readonly file: string,
    floor: number,
    private readonly blockSize = 100_000,
    private readonly onReserveError: (err: Error) => void = () => {},
    stored: Reservation = SequenceAllocator.readReservation(file),
  ) {
    this.next = Math.max(stored.reservedEnd, floor, 1);
    this.reservedEnd = this.next;
  }

  static readReservation(file: string): Reservation {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return { reservedEnd: 0, state: code === 'ENOENT' ? 'missing' : 'unreadable', error: (err as Error).message };
    }
    try {
      const v = JSON.parse(text) as { reservedEnd?: unknown };
      if (typeof v.reservedEnd === 'number' && Number.isSafeInteger(v.reservedEnd) && v.reservedEnd >= 0)
        return { reservedEnd: v.reservedEnd, state: 'ok', error: null };
      return { reservedEnd: 0, state: 'unreadable', error: 'no reservedEnd in it' };
    } catch (err) {
      return { reservedEnd: 0, state: 'unreadable', error: (err as Error).message };
    }
  }

  /** The next number; reserves a new block first when the current one is used up (never throws). */
  take(): number {
    if (this.next >= this.reservedEnd && this.reserveError === null) this.tryReserve();
    return this.next++;
  }

  /** The number take() would return next. */
  peek(): number {
    return this.next;
  }

  /** Numbers are being handed out beyond the reservation on disk. */
  get unreserved(): boolean {
    return this.next > this.reservedEnd;
  }

  /** Called once a second (at flush): a reservation that failed is tried again. */
  retry(): void {
    if (this.reserveError !== null) this.tryReserve();
  }

  private tryReserve(): boolean {
    const end = this.next + this.blockSize;
    try {
      writeFileAtomicSync(this.file, JSON.stringify({ reservedEnd: end }));
    } catch (err) {
      const first = this.reserveError === null;
      this.reserveError = (err as Error).message;
      if (first) this.onReserveError(err as Error);
      return false;
    }
    this.reservedEnd = end;
    this.reserveError = null;
    return true;
  }
}
