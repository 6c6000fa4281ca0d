/**
 * Unwraps the board's 32-bit microsecond clock into a monotonic engine time.
 * A step larger than `maxStepUs` (a board reset, or frames missing for longer
 * than any plausible outage of a running board) is a discontinuity: engine time
 * advances by one nominal sample period and the caller restarts derived state.
 */
export class BoardClock {
  private anchored = false;
  private last32 = 0;
  /** Unwrapped time of the latest sample, microseconds. */
  nowUs = 0;
  discontinuities = 0;

  constructor(private readonly maxStepUs: number) {}

  /**
   * Advance to the board time in `source.tUs`. Takes the decoded frame rather
   * than the number: a 32-bit time above 2^31 passed as an argument would be
   * boxed on every call V8 does not inline. Returns true when this sample is
   * discontinuous with the previous one.
   */
  advanceTo(source: { readonly tUs: number }, nominalStepUs: number): boolean {
    const t32 = source.tUs;
    if (!this.anchored) {
      const first = this.nowUs === 0 && this.discontinuities === 0;
      this.anchored = true;
      this.last32 = t32;
      if (first) {
        this.nowUs = t32;
        return false;
      }
      this.nowUs += nominalStepUs;
      this.discontinuities++;
      return true;
    }
    const step = (t32 - this.last32) >>> 0;
    this.last32 = t32;
    if (step > this.maxStepUs) {
      this.nowUs += nominalStepUs;
      this.discontinuities++;
      return true;
    }
    this.nowUs += step;
    return false;
  }

  /** The board rebooted: its next timestamp starts a new segment of engine time. */
  reanchor(): void {
    if (this.anchored) this.anchored = false;
  }
}
