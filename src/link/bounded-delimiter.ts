import { DelimiterParser } from '@serialport/parser-delimiter';
import type { TransformCallback } from 'node:stream';

const EMPTY = Buffer.alloc(0);
function ignore(): void {}

/**
 * `@serialport/parser-delimiter` splitting on 0x00, with a length cap it lacks
 * of its own: bytes that run past `maxFrame` without a delimiter (line noise,
 * a babbling board) are discarded up to the next delimiter and counted once,
 * instead of being buffered without bound.
 */
export class BoundedDelimiterParser extends DelimiterParser {
  /** Frames dropped because they exceeded maxFrame. */
  oversized = 0;
  private discarding = false;

  constructor(private readonly maxFrame: number) {
    super({ delimiter: [0x00], includeDelimiter: false });
  }

  override _transform(chunk: Buffer, encoding: BufferEncoding, cb: TransformCallback): void {
    super._transform(chunk, encoding, ignore);
    if (this.buffer.length > this.maxFrame) {
      this.buffer = EMPTY;
      if (!this.discarding) {
        this.discarding = true;
        this.oversized++;
      }
    }
    cb();
  }

  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk instanceof Buffer) {
      if (this.discarding) {
        // The tail of a frame whose head was already thrown away.
        this.discarding = false;
        return true;
      }
      if (chunk.length > this.maxFrame) {
        this.oversized++;
        return true;
      }
    }
    return super.push(chunk, encoding);
  }

  /** Forget a partial frame, e.g. after the port was reopened. */
  reset(): void {
    this.buffer = EMPTY;
    this.discarding = false;
  }
}
