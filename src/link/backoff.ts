/**
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential
 * Backoff And Jitter"): delay = random(0, min(cap, base * 2^attempt)).
 * Full jitter spreads a fleet's retries evenly; a floor keeps a local device
 * reopen from spinning when the random draw is near zero.
 */
export class Backoff {
  private attempt = 0;
  constructor(
    private baseMs: number,
    private capMs: number,
    private readonly floorMs = 0,
    private readonly random: () => number = Math.random,
  ) {
    if (!(baseMs > 0) || !(capMs >= baseMs)) throw new RangeError(`backoff needs 0 < base (${baseMs}) <= cap (${capMs})`);
  }

  next(): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.max(this.floorMs, Math.floor(this.random() * ceiling));
  }

  /** A new base (the cloud slowing the fleet down); the cap rises with it if need be. */
  setBase(baseMs: number): void {
    if (!(baseMs > 0)) throw new RangeError(`backoff base must be positive, got ${baseMs}`);
    this.baseMs = baseMs;
    if (this.capMs < baseMs) this.capMs = baseMs;
  }

  get base(): number {
    return this.baseMs;
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}
