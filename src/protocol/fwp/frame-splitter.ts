/**
 * fwp frames out of a byte stream that arrives in pieces (a capture, a dump,
 * a benchmark's buffer): split on 0x00 under the same length cap as the
 * link's parser (link/bounded-delimiter.ts), without allocating: complete
 * frames are decoded where they lie; only a frame cut by a piece boundary is
 * carried, in a buffer allocated once.
 */
import { MAX_WIRE_FRAME } from './codec.js';

export class FwpFrameSplitter {
  /** Frames dropped for running past the cap without a delimiter. */
  oversized = 0;
  private readonly maxFrame = MAX_WIRE_FRAME - 1;
  private readonly carry = Buffer.alloc(MAX_WIRE_FRAME - 1);
  private carried = 0;
  private discarding = false;

  constructor(private readonly onFrame: (bytes: Buffer, start: number, end: number) => void) {}

  feed(b: Buffer, from: number, to: number): void {
    const maxFrame = this.maxFrame;
    let start = from;
    for (let i = from; i < to; i++) {
      if (b[i] !== 0) continue;
      if (this.discarding) this.discarding = false;
      else if (this.carried > 0) {
        if (i - start > maxFrame - this.carried) this.oversized++;
        else {
          b.copy(this.carry, this.carried, start, i);
          this.onFrame(this.carry, 0, this.carried + (i - start));
        }
      } else if (i - start > maxFrame) this.oversized++;
      else this.onFrame(b, start, i);
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
    b.copy(this.carry, this.carried, start, to);
    this.carried += tail;
  }
}
