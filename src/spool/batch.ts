/**
 * Records waiting to be written, as preallocated columns: appending a record
 * copies numbers into typed arrays, so the 10 Hz path allocates nothing. Also
 * the bounded memory buffer that holds the newest records while the disk is
 * full (oldest dropped first, and counted).
 */
import type { LiveRecord } from '../metrics/record.js';
import { VALUE_COLUMNS, scaledField } from './columns.js';

export class RecordBatch {
  readonly seq: Float64Array;
  readonly ride: Int32Array;
  readonly tUs: Float64Array;
  readonly wallMs: Float64Array;
  readonly flags: Int32Array;
  /** values[c * capacity + i]: column c of record i (scaled integers, NULL_INT unknown). */
  readonly values: Int32Array;
  /** Index of the oldest record. */
  private head = 0;
  length = 0;
  /** Records pushed out by newer ones when full: first and last seq, count. */
  droppedFirst = 0;
  droppedLast = 0;
  dropped = 0;

  constructor(readonly capacity: number) {
    this.seq = new Float64Array(capacity);
    this.ride = new Int32Array(capacity);
    this.tUs = new Float64Array(capacity);
    this.wallMs = new Float64Array(capacity);
    this.flags = new Int32Array(capacity);
    this.values = new Int32Array(capacity * VALUE_COLUMNS.length);
  }

  get full(): boolean {
    return this.length === this.capacity;
  }

  /**
   * Wall-clock offset in force, ms: wall = tUs / 1000 + wallOffset[0]. Set by
   * the owner at most once a second; reading the clock per record would
   * allocate (Date.now() returns a boxed number).
   */
  readonly wallOffset = new Float64Array(1);

  /** Append; when full, the oldest record is dropped and counted. */
  push(seq: number, ride: number, r: LiveRecord): void {
    const i = this.slot();
    this.seq[i] = seq;
    this.ride[i] = ride;
    this.tUs[i] = r.tUs;
    this.wallMs[i] = Math.round(r.tUs / 1000 + this.wallOffset[0]);
    this.flags[i] = r.flags;
    const cap = this.capacity;
    for (let c = 0; c < VALUE_COLUMNS.length; c++) this.values[c * cap + i] = scaledField(r, c);
    this.length++;
  }

  /** Append record `i` of another batch under a new sequence number (its wall time as that batch computed it). */
  pushFrom(src: RecordBatch, i: number, seq: number): void {
    const j = this.slot();
    this.seq[j] = seq;
    this.ride[j] = src.ride[i];
    this.tUs[j] = src.tUs[i];
    this.wallMs[j] = src.wallMs[i];
    this.flags[j] = src.flags[i];
    for (let c = 0; c < VALUE_COLUMNS.length; c++) this.values[c * this.capacity + j] = src.values[c * src.capacity + i];
    this.length++;
  }

  /** The array index for one more record; when full, the oldest is dropped (and counted) first. */
  private slot(): number {
    if (this.length === this.capacity) {
      const s = this.seq[this.head];
      if (this.dropped === 0) this.droppedFirst = s;
      this.droppedLast = s;
      this.dropped++;
      this.head = (this.head + 1) % this.capacity;
      this.length--;
    }
    return (this.head + this.length) % this.capacity;
  }

  /** Array index of the k-th oldest record. */
  index(k: number): number {
    return (this.head + k) % this.capacity;
  }

  /**
   * Move the records' engine time up so the oldest comes `stepUs` after
   * `floorUs` (nothing when it already does); their wall times stay. Returns
   * the shift, µs. For records made before the spool said where the previous
   * run's time ended: t_ms never goes back in sequence order.
   */
  liftAbove(floorUs: number, stepUs: number): number {
    if (this.length === 0) return 0;
    const shift = Math.max(0, floorUs + stepUs - this.tUs[this.head]);
    if (shift > 0) for (let k = 0; k < this.length; k++) this.tUs[this.index(k)] += shift;
    return shift;
  }

  /**
   * Forget the k oldest records (they were written). Emptied, the batch starts
   * again at index 0: once a second's records are committed the next ones go
   * into the same few pages, so the process touches (and keeps resident) only
   * what a second needs, not the whole buffer sized for an hour of full disk.
   */
  shift(k: number): void {
    this.length -= k;
    this.head = this.length === 0 ? 0 : (this.head + k) % this.capacity;
  }

  clearDropped(): void {
    this.dropped = 0;
  }
}
