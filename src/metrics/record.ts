/**
 * The 10 Hz output record, identical in shape for every protocol driver.
 * One LiveRecord instance is reused for every tick; consumers that keep data
 * copy it (RecordRing, the spool batcher), never hold the object.
 */

/** Record flag bits. Bits 0-3 pass the board's SAMPLE flags through unchanged. */
export const RecordFlag = {
  FLYWHEEL_FAULT: 1 << 0,
  CRANK_FAULT: 1 << 1,
  BRAKE_MOVING: 1 << 2,
  HR_CONTACT: 1 << 3,
  CADENCE_IMPLAUSIBLE: 1 << 4,
  POWER_IMPLAUSIBLE: 1 << 5,
  HR_IMPLAUSIBLE: 1 << 6,
  CADENCE_STALE: 1 << 7,
  POWER_STALE: 1 << 8,
  RESISTANCE_STALE: 1 << 9,
  HR_STALE: 1 << 10,
  /** Input stopped or the board clock jumped before this record; totals did not integrate across it. */
  GAP_BEFORE: 1 << 11,
  /** Values derive from a safe default calibration, not the bike's own. */
  DEFAULT_CALIBRATION: 1 << 12,
} as const;

export class LiveRecord {
  /** Engine time in microseconds: the board clock, unwrapped, monotonic across wraps and board resets. */
  tUs = 0;
  /** NaN where the value is unknown (no sensor, implausible, expired). */
  cadenceRpm = 0;
  powerW = 0;
  resistancePct = 0;
  flywheelRpm = 0;
  speedKmh = 0;
  hrBpm = 0;
  /** Ride totals since the last resetTotals(). */
  distanceM = 0;
  energyKj = 0;
  flags = 0;
}

/** A plain-object copy for logs, JSON and tests (allocates: not for the hot path). */
export function recordToJson(r: LiveRecord): Record<string, number | null> {
  const n = (v: number, digits: number): number | null => (Number.isFinite(v) ? Number(v.toFixed(digits)) : null);
  return {
    tUs: r.tUs,
    cadenceRpm: n(r.cadenceRpm, 1),
    powerW: n(r.powerW, 1),
    resistancePct: n(r.resistancePct, 1),
    flywheelRpm: n(r.flywheelRpm, 1),
    speedKmh: n(r.speedKmh, 2),
    hrBpm: n(r.hrBpm, 0),
    distanceM: n(r.distanceM, 1),
    energyKj: n(r.energyKj, 3),
    flags: r.flags,
  };
}

/** History of the last `capacity` records as a struct of typed arrays. */
export class RecordRing {
  readonly tUs: Float64Array;
  readonly cadenceRpm: Float32Array;
  readonly powerW: Float32Array;
  readonly resistancePct: Float32Array;
  readonly flywheelRpm: Float32Array;
  readonly speedKmh: Float32Array;
  readonly hrBpm: Float32Array;
  readonly distanceM: Float64Array;
  readonly energyKj: Float64Array;
  readonly flags: Uint16Array;
  /** Index of the next write. */
  private head = 0;
  /** Records written since construction (not bounded by capacity). */
  written = 0;

  constructor(readonly capacity: number) {
    this.tUs = new Float64Array(capacity);
    this.cadenceRpm = new Float32Array(capacity);
    this.powerW = new Float32Array(capacity);
    this.resistancePct = new Float32Array(capacity);
    this.flywheelRpm = new Float32Array(capacity);
    this.speedKmh = new Float32Array(capacity);
    this.hrBpm = new Float32Array(capacity);
    this.distanceM = new Float64Array(capacity);
    this.energyKj = new Float64Array(capacity);
    this.flags = new Uint16Array(capacity);
  }

  push(r: LiveRecord): void {
    const i = this.head;
    this.tUs[i] = r.tUs;
    this.cadenceRpm[i] = r.cadenceRpm;
    this.powerW[i] = r.powerW;
    this.resistancePct[i] = r.resistancePct;
    this.flywheelRpm[i] = r.flywheelRpm;
    this.speedKmh[i] = r.speedKmh;
    this.hrBpm[i] = r.hrBpm;
    this.distanceM[i] = r.distanceM;
    this.energyKj[i] = r.energyKj;
    this.flags[i] = r.flags;
    this.head = i + 1 === this.capacity ? 0 : i + 1;
    this.written++;
  }

  get size(): number {
    return this.written < this.capacity ? this.written : this.capacity;
  }

  /** Array index of the record `back` steps before the newest (0 = newest), or -1. */
  indexBack(back: number): number {
    if (back < 0 || back >= this.size) return -1;
    let i = this.head - 1 - back;
    if (i < 0) i += this.capacity;
    return i;
  }
}
