/**
 * The 10 Hz metrics engine (the hot path). Protocol drivers push readings;
 * every `recordIntervalUs` of reading time the engine emits one LiveRecord to
 * its sink. All state lives in fields and typed arrays allocated at
 * construction: pushing a reading and emitting a record allocate nothing.
 *
 * Two kinds of reading feed the same pipeline:
 * - counters (the flywheel board): cumulative crank revolutions with event
 *   times, flywheel ticks with tick times, brake position, heart rate. Cadence
 *   and flywheel speed are derived here, power from the calibration.
 * - values (boards that compute for themselves): cadence, power, brake
 *   position or resistance %, heart rate, each optional per reading.
 *
 * Over 400 lines: one class whose channels share preallocated typed arrays
 * between the readings the drivers commit (metrics/readings.ts) and the 10 Hz
 * tick that reads them; split, the tick would read another object's fields
 * through calls V8 may not inline (boxing doubles on the hot path).
 */
import type { Calibration } from './calibration.js';
import { LiveRecord, RecordFlag, RecordRing } from './record.js';
import { CounterReading, ValueReading } from './readings.js';
import { ReadingKind, SampleRing } from './sample-ring.js';
import type { SpeedModel } from './speed-model.js';

export interface EngineOptions {
  calibration: Calibration;
  speedModel: SpeedModel;
  onRecord: (record: LiveRecord) => void;
  recordIntervalUs?: number;
  /** Cadence reads 0 after this long without a crank event (CSC practice: 3 s). */
  cadenceTimeoutUs?: number;
  /** Flywheel speed reads 0 after this long without a tick. */
  flywheelTimeoutUs?: number;
  /** Window over which flywheel speed is averaged. */
  flywheelWindowUs?: number;
  /** A value older than this is flagged stale but still shown. */
  staleAfterUs?: number;
  /** A value older than this is withdrawn (NaN): never invent data. */
  expireAfterUs?: number;
  /** Readings further apart than this are a gap: totals do not integrate across it. */
  maxGapUs?: number;
  sampleRingCapacity?: number;
  recordRingCapacity?: number;
  /** Set when the calibration is a safe default rather than the bike's own. */
  defaultCalibration?: boolean;
}

export const LIMITS = {
  maxCadenceRpm: 200,
  maxPowerW: 3000,
  maxHrBpm: 230,
} as const;

const TWO_PI_OVER_60 = (2 * Math.PI) / 60;

// Channel indices for value readings.
const CH_CADENCE = 0;
const CH_POWER = 1;
const CH_RES_RAW = 2;
const CH_RES_PCT = 3;
const CH_HR = 4;
const CHANNELS = 5;

export class EngineCounters {
  readings = 0;
  records = 0;
  gaps = 0;
  resets = 0;
  implausibleCadence = 0;
  implausiblePower = 0;
  implausibleHr = 0;
}

export class MetricsEngine {
  readonly samples: SampleRing;
  readonly records: RecordRing;
  readonly record = new LiveRecord();
  readonly counters = new EngineCounters();
  /** The drivers' way in (metrics/readings.ts): fill one, then commitCounterReading() or commitValueReading(). */
  readonly counterReading = new CounterReading();
  readonly valueReading = new ValueReading();

  private readonly calibration: Calibration;
  private readonly speedModel: SpeedModel;
  private readonly onRecord: (record: LiveRecord) => void;
  private readonly intervalUs: number;

  /** One record per this much engine time. */
  get recordIntervalUs(): number {
    return this.intervalUs;
  }
  private readonly cadenceTimeoutUs: number;
  private readonly flywheelTimeoutUs: number;
  private readonly flywheelWindowUs: number;
  private readonly staleAfterUs: number;
  private readonly expireAfterUs: number;
  private readonly maxGapUs: number;
  private baseFlags: number;

  /** Latest value and engine time of its last update, per channel. */
  private readonly value = new Float64Array(CHANNELS);
  private readonly updatedUs = new Float64Array(CHANNELS);
  /** Channel values resolved for the record being emitted. */
  private readonly current = new Float64Array(CHANNELS);
  private inertialW = 0;
  /** Argument/result registers for calibration and speed-model calls (see Calibration.resistancePctIO). */
  private readonly io = new Float64Array(2);

  private started = false;
  private nextTickUs = 0;
  private lastEmitUs = 0;
  /** Added to the tick time of each record (see continueAfter). */
  private timeBaseUs = 0;
  private floorUs = -1;
  private lastReadingUs = 0;
  private gapPending = false;
  /** Index of the first reading after the last reset; history before it is unrelated. */
  private historyStart = 0;
  private counterMode = false;
  /** Board flags OR-ed over the current interval. */
  private intervalFlags = 0;
  private intervalCadenceImplausible = false;

  // Crank state (Bluetooth CSC style: 16-bit revolutions, 1/1024 s event time).
  private haveCrank = false;
  private lastCrankRevs = 0;
  private lastCrankEvt = 0;
  private lastCrankChangeUs = 0;
  // Flywheel state.
  private lastFlyTickEngineUs = 0;
  private haveFly = false;
  private flywheelRpm = 0;

  private distanceM = 0;
  private energyKj = 0;

  constructor(opts: EngineOptions) {
    this.calibration = opts.calibration;
    this.speedModel = opts.speedModel;
    this.onRecord = opts.onRecord;
    this.intervalUs = opts.recordIntervalUs ?? 100_000;
    this.cadenceTimeoutUs = opts.cadenceTimeoutUs ?? 3_000_000;
    this.flywheelTimeoutUs = opts.flywheelTimeoutUs ?? 2_000_000;
    this.flywheelWindowUs = opts.flywheelWindowUs ?? 300_000;
    this.staleAfterUs = opts.staleAfterUs ?? 1_000_000;
    this.expireAfterUs = opts.expireAfterUs ?? 5_000_000;
    this.maxGapUs = opts.maxGapUs ?? 1_000_000;
    this.baseFlags = opts.defaultCalibration ? RecordFlag.DEFAULT_CALIBRATION : 0;
    this.samples = new SampleRing(opts.sampleRingCapacity ?? 1024);
    this.records = new RecordRing(opts.recordRingCapacity ?? 1200);
    this.value.fill(NaN);
  }

  /**
   * Hot-path input. A driver claims a slot, fills every column of it in
   * `samples` (typed arrays, so numbers stay unboxed) and commits it. V8 boxes
   * non-integer and >31-bit numbers passed to or returned from calls it does
   * not inline, so hot-path calls here carry only small integers (slot
   * indices, channel ids); doubles travel through typed arrays and fields.
   */
  beginReading(kind: number): number {
    const s = this.samples.claim();
    this.samples.kind[s] = kind;
    return s;
  }

  /** Commit a COUNTERS slot: tUs, boardT32, flyTicks, flyTickUs, crankRevs, crankEvt, resistanceRaw, hrBpm (0 = none), flags. */
  commitCounters(s: number): void {
    const ring = this.samples;
    this.beforeReading(s);
    const tUs = ring.tUs[s];
    const boardFlags = ring.flags[s];
    this.counterMode = true;
    this.intervalFlags |= boardFlags & 0x0f;
    this.updateCrank(s);
    this.updateFlywheelTick(s);
    this.value[CH_RES_RAW] = ring.resistanceRaw[s];
    this.updatedUs[CH_RES_RAW] = tUs;
    // hr 0 means the board has no heart-rate reading: an explicit absence.
    const hr = ring.hrBpm[s];
    this.value[CH_HR] = hr === 0 ? NaN : hr;
    this.updatedUs[CH_HR] = tUs;
    ring.hrBpm[s] = this.value[CH_HR];
    ring.resistancePct[s] = NaN;
    ring.cadenceRpm[s] = NaN;
    ring.powerW[s] = NaN;
    this.afterReading();
  }

  /**
   * Commit a VALUES slot: tUs, cadenceRpm, powerW, resistanceRaw,
   * resistancePct, hrBpm, flags; NaN for each value the reading does not carry
   * (a polled bus answers one value at a time).
   */
  commitValues(s: number): void {
    const ring = this.samples;
    this.beforeReading(s);
    const tUs = ring.tUs[s];
    this.counterMode = false;
    this.intervalFlags |= ring.flags[s] & 0x0f;
    const cadence = ring.cadenceRpm[s];
    if (cadence === cadence) {
      if (cadence > LIMITS.maxCadenceRpm) {
        this.intervalCadenceImplausible = true;
        this.counters.implausibleCadence++;
      } else {
        this.value[CH_CADENCE] = cadence;
        this.updatedUs[CH_CADENCE] = tUs;
      }
    }
    this.takeValue(s, CH_POWER);
    this.takeValue(s, CH_RES_RAW);
    this.takeValue(s, CH_RES_PCT);
    this.takeValue(s, CH_HR);
    this.afterReading();
  }

  private takeValue(s: number, ch: number): void {
    const ring = this.samples;
    const v =
      ch === CH_POWER
        ? ring.powerW[s]
        : ch === CH_RES_RAW
          ? ring.resistanceRaw[s]
          : ch === CH_RES_PCT
            ? ring.resistancePct[s]
            : ring.hrBpm[s];
    if (v !== v) return;
    this.value[ch] = ch === CH_HR && v === 0 ? NaN : v;
    this.updatedUs[ch] = ring.tUs[s];
  }

  /** Commit `counterReading` as filled by a driver. */
  commitCounterReading(): void {
    const r = this.counterReading;
    const ring = this.samples;
    const s = this.beginReading(ReadingKind.COUNTERS);
    ring.tUs[s] = r.tUs;
    ring.boardT32[s] = r.boardT32;
    ring.flyTicks[s] = r.flyTicks;
    ring.flyTickUs[s] = r.flyTickUs;
    ring.crankRevs[s] = r.crankRevs;
    ring.crankEvt[s] = r.crankEvt;
    ring.resistanceRaw[s] = r.resistanceRaw;
    ring.hrBpm[s] = r.hrBpm;
    ring.flags[s] = r.flags;
    this.commitCounters(s);
  }

  /** Commit `valueReading` as filled by a driver. */
  commitValueReading(): void {
    const r = this.valueReading;
    const ring = this.samples;
    const s = this.beginReading(ReadingKind.VALUES);
    ring.tUs[s] = r.tUs;
    ring.boardT32[s] = 0;
    ring.flyTicks[s] = 0;
    ring.flyTickUs[s] = 0;
    ring.crankRevs[s] = 0;
    ring.crankEvt[s] = 0;
    ring.resistanceRaw[s] = r.resistanceRaw;
    ring.resistancePct[s] = r.resistancePct;
    ring.cadenceRpm[s] = r.cadenceRpm;
    ring.powerW[s] = r.powerW;
    ring.hrBpm[s] = r.hrBpm;
    ring.flags[s] = r.flags;
    this.commitValues(s);
  }

  /** Convenience form of a COUNTERS reading (tests, tools); a driver fills counterReading. */
  pushCounters(
    tUs: number,
    boardT32: number,
    flyTicks: number,
    flyTickUs: number,
    crankRevs: number,
    crankEvt: number,
    resistanceRaw: number,
    hrBpm: number,
    boardFlags: number,
  ): void {
    const r = this.counterReading;
    r.tUs = tUs;
    r.boardT32 = boardT32;
    r.flyTicks = flyTicks;
    r.flyTickUs = flyTickUs;
    r.crankRevs = crankRevs;
    r.crankEvt = crankEvt;
    r.resistanceRaw = resistanceRaw;
    r.hrBpm = hrBpm;
    r.flags = boardFlags;
    this.commitCounterReading();
  }

  /** Convenience form of a VALUES reading (tests, tools); NaN for absent values. */
  pushValues(
    tUs: number,
    cadenceRpm: number,
    powerW: number,
    resistanceRaw: number,
    resistancePct: number,
    hrBpm: number,
    boardFlags: number,
  ): void {
    const r = this.valueReading;
    r.tUs = tUs;
    r.resistanceRaw = resistanceRaw;
    r.resistancePct = resistancePct;
    r.cadenceRpm = cadenceRpm;
    r.powerW = powerW;
    r.hrBpm = hrBpm;
    r.flags = boardFlags;
    this.commitValueReading();
  }

  /**
   * The source restarted (board reboot, clock discontinuity): counters
   * before and after are unrelated, so derived state starts afresh and the
   * next record carries GAP_BEFORE. Ride totals are kept.
   */
  resetSource(): void {
    this.counters.resets++;
    this.historyStart = this.samples.written;
    this.haveCrank = false;
    this.haveFly = false;
    this.flywheelRpm = 0;
    this.gapPending = true;
  }

  /** The driver fell back to (or recovered from) a safe default calibration; records say so. */
  setDefaultCalibration(on: boolean): void {
    this.baseFlags = on ? this.baseFlags | RecordFlag.DEFAULT_CALIBRATION : this.baseFlags & ~RecordFlag.DEFAULT_CALIBRATION;
  }

  /** Start a new ride: distance and energy from zero. */
  resetTotals(): void {
    this.distanceM = 0;
    this.energyKj = 0;
  }

  /**
   * Records from now on come after `tUs` (engine time of the newest record an
   * earlier run kept): t_ms is non-decreasing per device across agent
   * restarts, though each run's board clock starts anew (SPEC.md 7).
   */
  continueAfter(tUs: number): void {
    if (tUs > this.floorUs) this.floorUs = tUs;
  }

  get totals(): { distanceM: number; energyKj: number } {
    return { distanceM: this.distanceM, energyKj: this.energyKj };
  }

  private beforeReading(s: number): void {
    const tUs = this.samples.tUs[s];
    this.counters.readings++;
    if (!this.started) {
      this.started = true;
      this.nextTickUs = tUs + this.intervalUs;
      this.lastEmitUs = tUs;
      this.lastReadingUs = tUs;
      return;
    }
    if (tUs - this.lastReadingUs > this.maxGapUs || tUs < this.lastReadingUs) {
      // Readings stopped (link lost, dropped frames) or time went backwards:
      // restart the tick grid at this reading instead of emitting a burst of
      // records for time nobody measured.
      this.counters.gaps++;
      this.gapPending = true;
      this.nextTickUs = tUs;
    }
    this.lastReadingUs = tUs;
  }

  private afterReading(): void {
    while (this.lastReadingUs >= this.nextTickUs) {
      this.emit();
      this.nextTickUs += this.intervalUs;
    }
  }

  private updateCrank(s: number): void {
    const ring = this.samples;
    const tUs = ring.tUs[s];
    const revs = ring.crankRevs[s];
    const evt = ring.crankEvt[s];
    if (!this.haveCrank) {
      this.haveCrank = true;
      this.lastCrankRevs = revs;
      this.lastCrankEvt = evt;
      this.lastCrankChangeUs = tUs;
      this.value[CH_CADENCE] = 0;
    } else if (revs !== this.lastCrankRevs) {
      const dRevs = (revs - this.lastCrankRevs) & 0xffff;
      const dEvt = (evt - this.lastCrankEvt) & 0xffff;
      // After a standstill (no crank event for longer than the timeout) the
      // previous event is no start of this revolution: the first stroke only
      // starts a new interval (SPEC.md 8.1), else it reads as 10 rpm for a
      // while (one revolution over the whole pause), or worse once the 16-bit
      // event time has wrapped.
      const resumed = tUs - this.lastCrankChangeUs > this.cadenceTimeoutUs || dEvt * 1_000_000 > this.cadenceTimeoutUs * 1024;
      this.lastCrankRevs = revs;
      this.lastCrankEvt = evt;
      this.lastCrankChangeUs = tUs;
      if (resumed) {
        this.value[CH_CADENCE] = 0;
      } else if (dEvt > 0) {
        const rpm = (dRevs * 60 * 1024) / dEvt;
        if (rpm > LIMITS.maxCadenceRpm) {
          this.intervalCadenceImplausible = true;
          this.counters.implausibleCadence++;
        } else {
          this.value[CH_CADENCE] = rpm;
        }
      }
    } else if (tUs - this.lastCrankChangeUs > this.cadenceTimeoutUs) {
      this.value[CH_CADENCE] = 0;
    }
    // Each counters reading confirms the cadence state, so it is never stale.
    this.updatedUs[CH_CADENCE] = tUs;
  }

  private updateFlywheelTick(s: number): void {
    const ring = this.samples;
    const n = ring.written - 1;
    if (this.haveFly && (n - 1 < this.historyStart || ring.flyTicks[ring.slot(n - 1)] === ring.flyTicks[s])) return;
    this.haveFly = true;
    // Engine time of the latest tick: the reading's time less how long before it the tick came.
    this.lastFlyTickEngineUs = ring.tUs[s] - ((ring.boardT32[s] - ring.flyTickUs[s]) >>> 0);
  }

  /**
   * Flywheel rpm from exact tick times: the ticks between the oldest reading
   * inside the window (or the nearest older one when the flywheel is slow)
   * and the newest, over the board time between their latest ticks.
   */
  private updateFlywheelRpm(): void {
    const atUs = this.nextTickUs;
    const ring = this.samples;
    const newest = ring.written - 1;
    if (newest < this.historyStart) {
      this.flywheelRpm = 0;
      return;
    }
    const h = ring.slot(newest);
    const ticksNow = ring.flyTicks[h];
    const tickUsNow = ring.flyTickUs[h];
    const oldestAllowed = Math.max(this.historyStart, ring.written - ring.capacity);
    const tNewest = ring.tUs[h];
    let pick = -1;
    for (let n = newest - 1; n >= oldestAllowed; n--) {
      const k = ring.slot(n);
      if (ring.kind[k] !== ReadingKind.COUNTERS) break;
      const age = tNewest - ring.tUs[k];
      if (age > this.flywheelTimeoutUs) break;
      if (ring.flyTicks[k] !== ticksNow) {
        pick = k;
        if (age >= this.flywheelWindowUs) break;
      }
    }
    let rpm = this.flywheelRpm;
    if (pick >= 0) {
      const dTicks = (ticksNow - ring.flyTicks[pick]) >>> 0;
      const dUs = (tickUsNow - ring.flyTickUs[pick]) >>> 0;
      if (dUs > 0) rpm = (dTicks * 60e6) / (this.calibration.ticksPerRev * dUs);
    }
    const sinceTick = atUs - this.lastFlyTickEngineUs;
    if (sinceTick > this.flywheelTimeoutUs) rpm = 0;
    else if (sinceTick > 0) {
      // With no tick for sinceTick, the wheel turns no faster than one tick per sinceTick.
      const bound = 60e6 / (this.calibration.ticksPerRev * sinceTick);
      if (rpm > bound) rpm = bound;
    }
    this.flywheelRpm = rpm;
  }

  /** Channel value at the tick into `current[ch]`: NaN once expired; sets stale flags. */
  private resolveChannel(ch: number, staleFlag: number): void {
    const age = this.nextTickUs - this.updatedUs[ch];
    if (age > this.expireAfterUs) {
      this.record.flags |= staleFlag;
      this.current[ch] = NaN;
      return;
    }
    if (age > this.staleAfterUs) this.record.flags |= staleFlag;
    this.current[ch] = this.value[ch];
  }

  private emit(): void {
    const atUs = this.nextTickUs;
    const r = this.record;
    const cal = this.calibration;
    const cur = this.current;
    // Engine time continues after the floor (the spool's newest record, from
    // an earlier run): the base only ever grows, so record times never go back.
    let tUs = atUs + this.timeBaseUs;
    if (tUs <= this.floorUs) {
      this.timeBaseUs += this.floorUs + this.intervalUs - tUs;
      tUs = this.floorUs + this.intervalUs;
    }
    r.tUs = tUs;
    r.flags = this.baseFlags | this.intervalFlags;
    if (this.gapPending) r.flags |= RecordFlag.GAP_BEFORE;

    // Resistance: a % the driver computed (a polled bike converts with its own table) when there is one,
    // else the brake position through this engine's calibration.
    this.resolveChannel(CH_RES_RAW, RecordFlag.RESISTANCE_STALE);
    const raw = cur[CH_RES_RAW];
    const io = this.io;
    let pct = NaN;
    if (!this.counterMode) {
      this.resolveChannel(CH_RES_PCT, RecordFlag.RESISTANCE_STALE);
      pct = cur[CH_RES_PCT];
    }
    if (pct !== pct && raw === raw) {
      io[0] = raw;
      cal.resistancePctIO(io);
      pct = io[0];
    }
    r.resistancePct = pct;

    this.resolveChannel(CH_CADENCE, RecordFlag.CADENCE_STALE);
    let cadence = cur[CH_CADENCE];
    if (this.intervalCadenceImplausible) {
      r.flags |= RecordFlag.CADENCE_IMPLAUSIBLE;
      cadence = NaN;
    }
    r.cadenceRpm = cadence;

    let power: number;
    if (this.counterMode) {
      this.updateFlywheelRpm();
      const rpm = this.flywheelRpm;
      r.flywheelRpm = rpm;
      this.updateInertialWatts();
      if (pct === pct) {
        io[0] = rpm;
        io[1] = pct;
        cal.brakeWattsIO(io);
        power = io[0] + this.inertialW;
      } else power = NaN;
      if (power < 0) power = 0; // coasting: the flywheel drives the brake, not the rider
    } else {
      r.flywheelRpm = NaN;
      this.resolveChannel(CH_POWER, RecordFlag.POWER_STALE);
      power = cur[CH_POWER];
    }
    if (power > LIMITS.maxPowerW) {
      r.flags |= RecordFlag.POWER_IMPLAUSIBLE;
      this.counters.implausiblePower++;
      power = NaN;
    }
    r.powerW = power;

    this.resolveChannel(CH_HR, RecordFlag.HR_STALE);
    let hr = cur[CH_HR];
    if (hr > LIMITS.maxHrBpm) {
      r.flags |= RecordFlag.HR_IMPLAUSIBLE;
      this.counters.implausibleHr++;
      hr = NaN;
    }
    r.hrBpm = hr;

    let speed = NaN;
    if (power === power) {
      io[0] = power;
      this.speedModel.kmhIO(io);
      speed = io[0];
    }
    r.speedKmh = speed;

    // Totals integrate over the interval unless a gap precedes this record.
    if (!this.gapPending) {
      const dtUs = atUs - this.lastEmitUs;
      if (dtUs > 0 && dtUs <= this.maxGapUs) {
        if (speed === speed) this.distanceM += (speed / 3.6) * (dtUs / 1e6);
        if (power === power) this.energyKj += (power * dtUs) / 1e9;
      }
    }
    r.distanceM = this.distanceM;
    r.energyKj = this.energyKj;

    this.lastEmitUs = atUs;
    this.gapPending = false;
    this.intervalFlags = 0;
    this.intervalCadenceImplausible = false;
    this.counters.records++;
    this.records.push(r);
    this.onRecord(r);
  }

  /** I·ω·dω/dt with dω/dt over the last 0.5 s of records, into `inertialW`. */
  private updateInertialWatts(): void {
    this.inertialW = 0;
    const inertia = this.calibration.inertia;
    const recs = this.records;
    const back = Math.min(4, recs.size - 1);
    if (inertia === 0 || back < 0 || this.gapPending) return;
    const k = recs.indexBack(back);
    const dtS = (this.nextTickUs - recs.tUs[k]) / 1e6;
    const prevRpm = recs.flywheelRpm[k];
    if (!(dtS > 0) || dtS > 1 || prevRpm !== prevRpm) return;
    const omega = this.flywheelRpm * TWO_PI_OVER_60;
    const alpha = (omega - prevRpm * TWO_PI_OVER_60) / dtS;
    this.inertialW = inertia * omega * alpha;
  }
}
