/**
 * Rides: started by the console app (with a member and a class) or by
 * pedalling, ended by the app or after an idle time. Runs as a record sink at
 * 10 Hz, so its per-record work writes only into preallocated typed arrays;
 * building a summary (JSON, dates) happens on demand, on a timer or at a ride's
 * start and end.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../log/logger.js';
import type { LiveRecord } from '../metrics/record.js';
import type { RideEndReason, RideStartedBy, RideStore } from '../spool/rides.js';
import type { RideSummary } from '../contracts/health.js';

export interface RideTrackerOptions {
  /** End a ride after this long without pedalling. */
  idleEndMs: number;
  /** Start a ride when pedalling begins (no member, no class). */
  autoStart: boolean;
  /** Where rides are kept; null when the spool is unavailable (rides then live in memory only). */
  store: RideStore | null;
  /** Distance and energy from zero for a new ride. */
  resetTotals(): void;
  onStarted?(summary: RideSummary): void;
  onEnded?(summary: RideSummary): void;
  log: Pick<Logger, 'info' | 'warn' | 'error'>;
}

// Accumulator slots (a Float64Array: doubles written per record must not be boxed).
const START_T = 0;
const LAST_T = 1;
const N = 2;
const P_SUM = 3;
const P_N = 4;
const P_MAX = 5;
const C_SUM = 6;
const C_N = 7;
const C_MAX = 8;
const H_SUM = 9;
const H_N = 10;
const H_MAX = 11;
const DIST = 12;
const ENERGY = 13;
const BEST1 = 14;
const BEST5 = 15;
const WIN_N = 16;
const SUM1 = 17;
const SUM5 = 18;
const FIRST_SEQ = 19;
const LAST_SEQ = 20;
// The 1 Hz series (for charts): sums over the current second.
const S_P = 21;
const S_PN = 22;
const S_C = 23;
const S_CN = 24;
const S_H = 25;
const S_K = 26;
const SERIES_N = 27;
const SLOTS = 28;

/** One value per second per channel, up to this many seconds (6 hours); a longer ride's chart stops there. */
export const SERIES_CAPACITY = 21600;

/** Records per rolling window at 10 Hz. */
const WIN1 = 600;
const WIN5 = 3000;

const round1 = (v: number): number => Math.round(v * 10) / 10;

export class RideTracker {
  /** Spool row id of the current ride (0: none, or rides are not stored). */
  rowId = 0;
  private active = false;
  private uuid = '';
  private member: string | null = null;
  private classId: string | null = null;
  private startedBy: RideStartedBy = 'auto';
  private startedMs = 0;
  private readonly acc = new Float64Array(SLOTS);
  /** acc as of the last record with pedalling: an idle end trims the idle tail. */
  private readonly atLastPedal = new Float64Array(SLOTS);
  private readonly window = new Float32Array(WIN5);
  /** power, cadence, heart rate per second: [3 * SERIES_CAPACITY], channel-major. NaN: unknown. */
  private readonly series = new Float32Array(3 * SERIES_CAPACITY);
  private skipTotals = false;
  private readonly recent: RideSummary[] = [];

  constructor(private readonly opts: RideTrackerOptions) {}

  /** The spool opened after the tracker was made (or never: rides then stay in memory). */
  setStore(store: RideStore | null): void {
    this.opts.store = store;
  }

  /** Forget one member's rides kept in memory (spool unavailable); returns how many. */
  purgeInMemory(member: string): number {
    const before = this.recent.length;
    for (let i = this.recent.length - 1; i >= 0; i--) if (this.recent[i].member === member) this.recent.splice(i, 1);
    return before - this.recent.length;
  }

  get isActive(): boolean {
    return this.active;
  }

  /** Per 10 Hz record, before the spool stores it (so the record carries this ride). */
  onRecord(r: LiveRecord): void {
    const pedalling = r.cadenceRpm > 0;
    if (!this.active) {
      // After a ride ends mid-pedal (the app ended the class), the next auto ride waits for a pause.
      if (!pedalling) this.autoArmed = true;
      if (!pedalling || !this.opts.autoStart || !this.autoArmed) return;
      this.begin(null, null, 'auto');
    }
    const a = this.acc;
    if (a[N] === 0) {
      // First record of the ride: the start time and the idle clock begin here.
      a[START_T] = r.tUs;
      this.atLastPedal[LAST_T] = r.tUs;
    }
    if (r.tUs - this.atLastPedal[LAST_T] > this.opts.idleEndMs * 1000 && !pedalling && a[N] > 0) {
      this.finish('idle');
      return;
    }
    a[LAST_T] = r.tUs;
    a[N]++;
    const p = r.powerW;
    if (p === p) {
      a[P_SUM] += p;
      a[P_N]++;
      if (p > a[P_MAX]) a[P_MAX] = p;
    }
    if (pedalling) {
      a[C_SUM] += r.cadenceRpm;
      a[C_N]++;
      if (r.cadenceRpm > a[C_MAX]) a[C_MAX] = r.cadenceRpm;
    }
    const h = r.hrBpm;
    if (h > 0) {
      a[H_SUM] += h;
      a[H_N]++;
      if (h > a[H_MAX]) a[H_MAX] = h;
    }
    // The record that started the ride still carries the previous totals.
    if (this.skipTotals) this.skipTotals = false;
    else {
      if (r.distanceM === r.distanceM) a[DIST] = r.distanceM;
      if (r.energyKj === r.energyKj) a[ENERGY] = r.energyKj;
    }
    this.pushWindow(p === p ? p : 0);
    this.pushSeries(p, r.cadenceRpm, h);
    this.lastPedalled = pedalling;
    if (pedalling) this.atLastPedal.set(a);
  }

  private lastPedalled = false;
  private autoArmed = true;

  /** The spool's sequence number of the record onRecord just saw. */
  noteSeq(seq: number): void {
    if (!this.active || seq === 0) return;
    if (this.acc[FIRST_SEQ] === 0) this.acc[FIRST_SEQ] = seq;
    this.acc[LAST_SEQ] = seq;
    if (this.atLastPedal[FIRST_SEQ] === 0) this.atLastPedal[FIRST_SEQ] = seq;
    if (this.lastPedalled) this.atLastPedal[LAST_SEQ] = seq;
  }

  private pushSeries(p: number, c: number, h: number): void {
    const a = this.acc;
    if (p === p) {
      a[S_P] += p;
      a[S_PN]++;
    }
    if (c === c) {
      a[S_C] += c;
      a[S_CN]++;
    }
    if (h > 0) a[S_H] = h;
    if (++a[S_K] < 10) return;
    const i = a[SERIES_N];
    if (i < SERIES_CAPACITY) {
      const w = this.series;
      w[i] = a[S_PN] > 0 ? a[S_P] / a[S_PN] : Number.NaN;
      w[SERIES_CAPACITY + i] = a[S_CN] > 0 ? a[S_C] / a[S_CN] : Number.NaN;
      w[2 * SERIES_CAPACITY + i] = a[S_H] > 0 ? a[S_H] : Number.NaN;
      a[SERIES_N] = i + 1;
    }
    a[S_P] = 0;
    a[S_PN] = 0;
    a[S_C] = 0;
    a[S_CN] = 0;
    a[S_H] = 0;
    a[S_K] = 0;
  }

  /** The ride's 1 Hz series as stored: float32 little-endian, n power values, n cadence, n heart rate. */
  seriesBytes(): Buffer {
    const n = this.acc[SERIES_N];
    const out = Buffer.alloc(n * 12);
    for (let ch = 0; ch < 3; ch++) {
      for (let i = 0; i < n; i++) out.writeFloatLE(this.series[ch * SERIES_CAPACITY + i], (ch * n + i) * 4);
    }
    return out;
  }

  private pushWindow(p: number): void {
    const a = this.acc;
    const w = this.window;
    const n = a[WIN_N];
    const i = n % WIN5;
    // The sample leaving the 1-minute window is WIN1 back; the one leaving the 5-minute window is the one overwritten.
    if (n >= WIN1) a[SUM1] -= w[(n - WIN1) % WIN5];
    if (n >= WIN5) a[SUM5] -= w[i];
    w[i] = p;
    a[SUM1] += p;
    a[SUM5] += p;
    a[WIN_N] = n + 1;
    if (n + 1 >= WIN1 && a[SUM1] / WIN1 > a[BEST1]) a[BEST1] = a[SUM1] / WIN1;
    if (n + 1 >= WIN5 && a[SUM5] / WIN5 > a[BEST5]) a[BEST5] = a[SUM5] / WIN5;
  }

  /**
   * Start a ride for a member (already pseudonymised) and class. A ride in
   * progress ends first (reason `replaced`); its summary is returned too.
   */
  start(member: string | null, classId: string | null): { started: RideSummary; ended: RideSummary | null } {
    const ended = this.active ? this.finish('replaced') : null;
    this.begin(member, classId, 'api');
    return { started: this.summary(), ended };
  }

  /** End the current ride; null when there is none. */
  end(reason: RideEndReason = 'api'): RideSummary | null {
    return this.active ? this.finish(reason) : null;
  }

  /** Summary of the ride in progress, or null. */
  current(): RideSummary | null {
    return this.active ? this.summary() : null;
  }

  /** Current member (pseudonym) riding, or null. */
  get currentMember(): string | null {
    return this.active ? this.member : null;
  }

  /** Write the running ride's summary to the store (a timer calls this; a crash then loses at most one period). */
  persist(): void {
    if (!this.active || this.rowId === 0 || !this.opts.store) return;
    try {
      this.opts.store.update(this.rowId, this.summary(), this.seriesBytes());
    } catch (err) {
      this.opts.log.warn({ err }, 'ride summary not saved');
    }
  }

  /** Ended rides kept in memory when the spool is unavailable (newest first). */
  recentInMemory(): readonly RideSummary[] {
    return this.recent;
  }

  private begin(member: string | null, classId: string | null, by: RideStartedBy): void {
    this.active = true;
    this.uuid = randomUUID();
    this.member = member;
    this.classId = classId;
    this.startedBy = by;
    this.startedMs = Date.now();
    this.acc.fill(0);
    this.atLastPedal.fill(0);
    this.lastPedalled = false;
    this.skipTotals = true;
    this.opts.resetTotals();
    this.rowId = 0;
    if (this.opts.store) {
      try {
        this.rowId = this.opts.store.create(this.uuid, member, classId, this.startedMs, by);
      } catch (err) {
        this.opts.log.error({ err }, 'ride not stored: its records go without a ride');
      }
    }
    const s = this.summary();
    this.opts.log.info({ ride: this.uuid, startedBy: by, member: member !== null, classId }, 'ride started');
    this.opts.onStarted?.(s);
  }

  private finish(reason: RideEndReason): RideSummary {
    // An idle end reports the ride as it was at the last pedal stroke.
    if (reason === 'idle') this.acc.set(this.atLastPedal);
    const s = this.summary();
    s.endReason = reason;
    s.endedAt = new Date(this.startedMs + s.durationS * 1000).toISOString();
    this.active = false;
    this.autoArmed = false;
    if (this.rowId !== 0 && this.opts.store) {
      try {
        this.opts.store.end(this.rowId, Date.parse(s.endedAt), reason, s, this.seriesBytes());
      } catch (err) {
        this.opts.log.error({ err, ride: s.ride }, 'ride end not stored');
      }
    } else {
      this.recent.unshift(s);
      if (this.recent.length > 50) this.recent.pop();
    }
    this.rowId = 0;
    this.opts.log.info({ ride: s.ride, reason, durationS: s.durationS, distanceM: s.distanceM }, 'ride ended');
    this.opts.onEnded?.(s);
    return s;
  }

  private summary(): RideSummary {
    const a = this.acc;
    // Each record stands for the 100 ms up to it.
    const durationS = a[N] > 0 ? round1((a[LAST_T] - a[START_T]) / 1e6 + 0.1) : 0;
    const avg = (sum: number, n: number): number | null => (n > 0 ? round1(sum / n) : null);
    return {
      ride: this.uuid,
      member: this.member,
      classId: this.classId,
      startedBy: this.startedBy,
      startedAt: new Date(this.startedMs).toISOString(),
      endedAt: null,
      endReason: null,
      durationS,
      distanceM: round1(a[DIST]),
      energyKj: Math.round(a[ENERGY] * 1000) / 1000,
      avgPowerW: avg(a[P_SUM], a[P_N]),
      maxPowerW: a[P_N] > 0 ? round1(a[P_MAX]) : null,
      avgCadenceRpm: avg(a[C_SUM], a[C_N]),
      maxCadenceRpm: a[C_N] > 0 ? round1(a[C_MAX]) : null,
      avgHrBpm: avg(a[H_SUM], a[H_N]),
      maxHrBpm: a[H_N] > 0 ? a[H_MAX] : null,
      best1minW: a[WIN_N] >= WIN1 ? round1(a[BEST1]) : null,
      best5minW: a[WIN_N] >= WIN5 ? round1(a[BEST5]) : null,
      records: a[N],
      firstSeq: a[FIRST_SEQ] || null,
      lastSeq: a[LAST_SEQ] || null,
    };
  }
}
