/**
 * Frames out of a byte stream split on 0x00 (COBS framing), under a length
 * cap, without allocating: a complete frame is handed on where it lies in the
 * bytes read (buffer, start, end), and only a frame cut by a read boundary is
 * carried, in a buffer allocated once. Used by the serial link and by
 * anything that decodes recorded bytes (captures, dumps, benchmarks).
 *
 * The same frames as `@serialport/parser-delimiter` (test/link/frame-splitter
 * checks it against that parser on random streams), without its stream: that
 * parser concatenated and sliced Buffers per frame and went through a
 * Transform's write, push and 'data' event, about a third of the agent's CPU
 * at 50 Hz (docs/performance.md).
 *
 * Bytes that run past `maxFrame` without a delimiter (line noise, a babbling
 * board) are dropped up to the next delimiter and counted once, never
 * buffered without bound. Empty frames (0x00 runs: a sender's padding) are
 * not frames and are not handed on.
 */

/**
 * Bytes `start`..`end` of `bytes`, valid only during the call: the link reads
 * into one buffer it reuses, so nothing is allocated per read or per frame.
 */
export type ByteSink = (bytes: Buffer, start: number, end: number) => void;

/** How a protocol driver takes the link's bytes (protocol/driver.ts). */
export type Framing =
  /** Frames between 0x00 delimiters (fwp): the link splits them here, under a length cap. */
  | { kind: 'delimited'; maxFrame: number; onFrame: ByteSink }
  /** A byte stream the driver frames itself (the polled bus, whose frames may contain their end byte). */
  | { kind: 'stream'; onData: ByteSink };

export class FrameSplitter {
  /** Frames dropped for running past the cap without a delimiter. */
  oversized = 0;
  /** Frames handed on. */
  frames = 0;
  private readonly carry: Buffer;
  private carried = 0;
  private discarding = false;

  constructor(
    readonly maxFrame: number,
    private readonly onFrame: ByteSink,
  ) {
    if (!(maxFrame > 0)) throw new RangeError(`maxFrame must be positive, got ${maxFrame}`);
    this.carry = Buffer.alloc(maxFrame);
  }

  /** Bytes `from`..`to` of `b`; frames are handed on before this returns (`b` may be reused after). */
  feed(b: Buffer, from: number, to: number): void {
    const maxFrame = this.maxFrame;
    let start = from;
    // Buffer#indexOf is memchr: 13 ns a 28-byte frame against 36 for a byte loop. It may look past `to` (into bytes
    // of an earlier read) before it stops; what it finds there is not used.
    for (let i = b.indexOf(0, from); i !== -1 && i < to; i = b.indexOf(0, i + 1)) {
      if (this.discarding) this.discarding = false;
      else if (this.carried > 0) {
        if (i - start > maxFrame - this.carried) this.oversized++;
        else {
          this.carryIn(b, start, i);
          this.frames++;
          this.onFrame(this.carry, 0, this.carried + (i - start));
        }
      } else if (i - start > maxFrame) this.oversized++;
      else if (i > start) {
        this.frames++;
        this.onFrame(b, start, i);
      }
      this.carried = 0;
      start = i + 1;
    }
    if (this.discarding || start >= to) return;
    const tail = to - start;
    if (this.carried + tail > maxFrame) {
      this.oversized++;
      this.discarding = true;
      this.carried = 0;
      return;
    }
    this.carryIn(b, start, to);
    this.carried += tail;
  }

  /**
   * Bytes `from`..`to` of `b` after what is carried. A loop, not Buffer#copy:
   * on Node 20 a copy from an offset makes a Uint8Array view per call (the
   * zero-allocation test caught it: a carry on almost every read).
   */
  private carryIn(b: Buffer, from: number, to: number): void {
    const carry = this.carry;
    for (let i = from, o = this.carried; i < to; i++, o++) carry[o] = b[i];
  }

  /** Forget a partial frame (the port was reopened: its bytes belong to no frame). */
  reset(): void {
    this.carried = 0;
    this.discarding = false;
  }
}
