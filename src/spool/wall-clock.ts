/**
 * One filtered mapping from engine time to wall time (wall_ms = t_ms +
 * offset), instead of a new estimate every second. A record is made some
 * milliseconds after the instant it stands for (the serial read's pacing, the
 * event loop), so each measurement `now - t` is the true offset plus a
 * latency that varies: the filter follows the smallest, moves down at most
 * SLEW_DOWN_MS and up at most DRIFT_UP_MS per measurement (once a second),
 * so wall time between records 100 ms apart never goes backwards, and the
 * cloud sees one offset for long stretches. A difference beyond STEP_MS is a
 * wall-clock step (NTP after boot, a clock set by hand) and is taken at once:
 * a packet's clock entries mark it.
 */
export const STEP_MS = 1000;
export const SLEW_DOWN_MS = 20;
/** Board crystals drift tens of ppm (50 ppm: 0.05 ms a second); this follows a slow board clock. */
export const DRIFT_UP_MS = 0.2;

export class WallClockMap {
  private offsetMs = 0;
  private known = false;

  get offset(): number {
    return this.offsetMs;
  }

  /**
   * Continue from an offset in force elsewhere, as if it were this map's last
   * measurement: the spool takes over the mapping of records held before it
   * opened, so the records after them are never placed before them.
   */
  continueFrom(offsetMs: number): void {
    this.offsetMs = offsetMs;
    this.known = true;
  }

  /** A measurement: the wall clock now, and the engine time of the newest record. Returns the offset in force. */
  measure(nowMs: number, tUs: number): number {
    const m = nowMs - tUs / 1000;
    const d = m - this.offsetMs;
    if (!this.known || Math.abs(d) > STEP_MS) {
      this.offsetMs = m;
      this.known = true;
    } else if (d < 0) {
      this.offsetMs -= Math.min(-d, SLEW_DOWN_MS);
    } else {
      this.offsetMs += Math.min(d, DRIFT_UP_MS);
    }
    return this.offsetMs;
  }
}
