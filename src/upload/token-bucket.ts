/**
 * A token bucket over bytes: `rate` bytes a second, bursts up to one second's
 * worth. A packet larger than the bucket may go when the bucket is full, so a
 * low limit slows uploads down without ever stopping them.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private rate: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = rate;
    this.last = now();
  }

  /** Change the rate (0 = unlimited); the tokens in hand are kept up to the new burst. */
  setRate(rate: number): void {
    this.refill();
    this.rate = rate;
    this.tokens = Math.min(this.tokens, rate);
  }

  get bytesPerSecond(): number {
    return this.rate;
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.rate, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
  }

  /** The ms to wait before `bytes` could be taken (0: now), taking nothing. */
  wait(bytes: number): number {
    if (this.rate <= 0) return 0;
    this.refill();
    const needed = Math.min(bytes, this.rate);
    return this.tokens >= needed ? 0 : Math.ceil(((needed - this.tokens) / this.rate) * 1000);
  }

  /** Take `bytes` if they are there and return 0; otherwise take nothing and return the ms to wait. */
  take(bytes: number): number {
    if (this.rate <= 0) return 0;
    this.refill();
    const needed = Math.min(bytes, this.rate);
    if (this.tokens >= needed) {
      this.tokens -= bytes; // may go negative for an oversized packet: the debt is paid before the next one
      return 0;
    }
    return Math.ceil(((needed - this.tokens) / this.rate) * 1000);
  }
}
