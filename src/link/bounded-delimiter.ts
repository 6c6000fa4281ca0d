import type * as Delimiter from '@serialport/parser-delimiter';
import { requireCjs } from '../util/require-cjs.js';
import type { TransformCallback } from 'node:stream';

const { DelimiterParser } = requireCjs('@serialport/parser-delimiter') as typeof Delimiter;

const EMPTY = Buffer.alloc(0);
function ignore(): void {}

/**
 * `@serialport/parser-delimiter` splitting on 0x00, with a length cap it lacks
 * of its own: bytes that run past `maxFrame` without a delimiter (line noise,
 * a babbling board) are discarded up to the next delimiter and counted once,
 * instead of being buffered without bound.
 */
export class BoundedDelimiterParser extends DelimiterParser {
  private discarding = false;

  /** `onOversized` is called once for each frame dropped for exceeding maxFrame. */
  constructor(
    private readonly maxFrame: number,
    private readonly onOversized: () => void,
  ) {
    super({ delimiter: [0x00], includeDelimiter: false });
  }

  override _transform(chunk: Buffer, encoding: BufferEncoding, cb: TransformCallback): void {
    super._transform(chunk, encoding, ignore);
    if (this.buffer.length > this.maxFrame) {
      this.buffer = EMPTY;
      if (!this.discarding) {
        this.discarding = true;
        this.onOversized();
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
        this.onOversized();
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
