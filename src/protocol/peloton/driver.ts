/**
 * The console side of the polled bus. In `poll` mode the agent is the head
 * unit: when the port opens it reads the 31-entry resistance calibration
 * table (each entry retried, a safe default flagged as such when the table
 * will not load, another attempt later), then asks for one value every
 * `pollIntervalMs`, cycling power, raw resistance, cadence, and matches each
 * reply to its request. In `listen` mode it decodes a stream that already
 * holds both directions (a recording): requests set the time (one per
 * `pollIntervalMs`) and replies are matched to them.
 *
 * Every reply becomes a VALUES reading written straight into the engine's
 * ring slot; in poll mode each poll also commits an empty reading, so the
 * 10 Hz records go on when the bike stops answering and the engine's
 * stale/expired flags say how old each value is. Nothing per frame allocates.
 */
import type { Logger } from '../../log/logger.js';
import type { MetricsEngine } from '../../metrics/engine.js';
import type { ValueReading } from '../../metrics/readings.js';
import type { PelotonBoardInfo } from '../../contracts/health.js';
import type { ProtocolHealth } from '../../contracts/health.js';
import type { Framing, ProtocolDriver } from '../driver.js';
import { encodeRequestInto, PelotonCmd, PelotonParser, REQ_CALIBRATION, REQ_READ, type PelotonFrameSink } from './codec.js';
import { DEFAULT_RESISTANCE_TABLE, TABLE_ENTRIES, tableProblem, writeResistancePct } from './resistance.js';

export interface PelotonDriverOptions {
  mode: 'poll' | 'listen';
  /** One request per this long (the original head unit: 100 ms). */
  pollIntervalMs: number;
  /** A calibration entry not answered in this long is asked again. */
  requestTimeoutMs: number;
  /** Attempts per calibration entry. */
  requestRetries: number;
  /** While on the default table, try the bike's again this often. */
  calibrationRetryMs: number;
  /** Writes to the bike (poll mode). */
  send: (bytes: Uint8Array) => boolean;
  /**
   * Deliver the bytes waiting on the link now (the link's readNow): asked
   * before a poll is counted unanswered, since after a held-up event loop the
   * next poll's timer runs before the read that holds the reply.
   */
  drainInput?: () => void;
  log: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Every matched value reply as it is on the wire (replay statistics); small integers only. */
  onValue?: (cmd: number, value: number) => void;
}

export class PelotonCounters {
  requests = 0;
  replies = 0;
  /** Value replies handed to the engine. */
  values = 0;
  /** Polls with no reply before the next poll. */
  timeouts = 0;
  /** Replies that answer no outstanding request, or another command. */
  unmatched = 0;
  calibrationLoads = 0;
  calibrationFailures = 0;
}

/** The poll cycle of the original head unit. */
const CYCLE = [PelotonCmd.POWER, PelotonCmd.RESISTANCE_RAW, PelotonCmd.CADENCE];
const NO_REQUEST = -1;

export class PelotonDriver implements ProtocolDriver, PelotonFrameSink {
  readonly name = 'peloton';
  readonly framing: Framing;
  readonly counters = new PelotonCounters();
  readonly parser: PelotonParser;
  /** The table in use: the bike's once read, the default until then. */
  readonly table = Float64Array.from(DEFAULT_RESISTANCE_TABLE);
  calibrationSource: 'default' | 'bike' = 'default';
  calibrationError: string | null = null;
  private readonly tx = new Uint8Array(4);
  /** Engine time of the reading being made, µs (a register: doubles through calls get boxed). */
  private readonly now = new Float64Array(1);
  private readonly t0 = performance.now();
  private pending = NO_REQUEST;
  private pendingCalEntry = NO_REQUEST;
  private calReply: ((value: number) => void) | null = null;
  private cycleIndex = 0;
  private pollTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private generation = 0;
  private readonly loadedTable = new Float64Array(TABLE_ENTRIES);
  private listenCalEntries = 0;

  constructor(
    private readonly engine: MetricsEngine,
    private readonly opts: PelotonDriverOptions,
  ) {
    this.parser = new PelotonParser(this);
    this.framing = { kind: 'stream', onData: (b, start, end) => this.parser.feed(b, start, end) };
    engine.setDefaultCalibration(true);
  }

  /** Feed bytes directly (replay, tests). */
  feed(b: Uint8Array, start: number, end: number): void {
    this.parser.feed(b, start, end);
  }

  linkOpened(): void {
    this.parser.reset();
    this.pending = NO_REQUEST;
    if (this.opts.mode !== 'poll') return;
    const gen = ++this.generation;
    // A table once read stays: a reopen after a hiccup goes straight back to polling.
    if (this.calibrationSource === 'bike') {
      this.startPolling();
      return;
    }
    void this.loadCalibration(gen).then(() => {
      if (gen === this.generation) this.startPolling();
    });
  }

  linkLost(reason: string): void {
    this.generation++;
    this.stopPolling();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.calReply = null;
    this.pendingCalEntry = NO_REQUEST;
    void reason;
  }

  health(): ProtocolHealth {
    const c = this.counters;
    return {
      name: 'peloton',
      frames: this.parser.requests + this.parser.replies,
      samples: c.values,
      errors: { ...this.parser.errorsByName(), unmatched: c.unmatched },
      lostFrames: 0,
      seqGaps: 0,
      boardResets: 0,
      requestTimeouts: c.timeouts,
    };
  }

  board(): PelotonBoardInfo {
    return {
      hello: null,
      status: null,
      calibration: { source: this.calibrationSource, error: this.calibrationError, table: Array.from(this.table) },
      counters: { ...this.counters },
    };
  }

  // --- frames -------------------------------------------------------------

  onRequest(type: number, cmd: number): void {
    // In poll mode the line carries only the bike's bytes; requests seen are a recording's.
    if (this.opts.mode !== 'listen') return;
    this.counters.requests++;
    if (type === REQ_READ) {
      if (this.pending !== NO_REQUEST) this.counters.timeouts++;
      this.pending = cmd;
      this.now[0] += this.opts.pollIntervalMs * 1000;
    } else if (type === REQ_CALIBRATION) {
      this.pendingCalEntry = cmd;
    }
  }

  onReply(cmd: number, value: number, digits: number): void {
    void digits;
    this.counters.replies++;
    if (cmd === PelotonCmd.CALIBRATION) {
      this.onCalibrationReply(value);
      return;
    }
    if (cmd !== this.pending) {
      this.counters.unmatched++;
      return;
    }
    this.pending = NO_REQUEST;
    this.opts.onValue?.(cmd, value);
    if (this.opts.mode === 'poll') this.stamp();
    const e = this.engine;
    const r = this.emptyReading();
    if (cmd === PelotonCmd.POWER) r.powerW = value / 10;
    else if (cmd === PelotonCmd.CADENCE) r.cadenceRpm = value;
    else if (cmd === PelotonCmd.RESISTANCE_RAW) {
      r.resistanceRaw = value;
      writeResistancePct(this.table, value, this.pctOut, 0);
      r.resistancePct = this.pctOut[0];
    } else if (cmd === PelotonCmd.RESISTANCE_PCT) r.resistancePct = value;
    this.counters.values++;
    e.commitValueReading();
  }

  /** The engine's value reading at the current time carrying no value (the caller sets the one it has). */
  private emptyReading(): ValueReading {
    const r = this.engine.valueReading;
    r.clear(this.now[0]);
    // The bus carries no heart rate: 0 says "none" (fresh), not "unknown for a while".
    r.hrBpm = 0;
    return r;
  }

  /** The resistance in % of the last raw reading (a register: see resistance.ts). */
  private readonly pctOut = new Float32Array(1);

  /** A driver that decodes a recording of both directions (replay, benchmarks): requests give the time. */
  static listener(engine: MetricsEngine, log: PelotonDriverOptions['log'], onValue?: PelotonDriverOptions['onValue']): PelotonDriver {
    return new PelotonDriver(engine, {
      mode: 'listen',
      pollIntervalMs: 100,
      requestTimeoutMs: 0,
      requestRetries: 0,
      calibrationRetryMs: 0,
      send: () => false,
      log,
      onValue,
    });
  }

  private onCalibrationReply(value: number): void {
    if (this.opts.mode === 'listen') {
      // A recording of a head unit's boot: take the table it read.
      const i = this.pendingCalEntry;
      this.pendingCalEntry = NO_REQUEST;
      if (i < 0 || i >= TABLE_ENTRIES) {
        this.counters.unmatched++;
        return;
      }
      this.loadedTable[i] = value;
      if (++this.listenCalEntries === TABLE_ENTRIES) this.adoptTable();
      return;
    }
    const done = this.calReply;
    if (!done) {
      this.counters.unmatched++;
      return;
    }
    this.calReply = null;
    done(value);
  }

  /** Engine time now in poll mode: the tablet's monotonic clock. */
  private stamp(): void {
    this.now[0] = Math.round((performance.now() - this.t0) * 1000);
  }

  // --- polling ------------------------------------------------------------

  private startPolling(): void {
    this.stopPolling();
    this.cycleIndex = 0;
    this.pollTimer = setInterval(this.poll, this.opts.pollIntervalMs);
  }

  private stopPolling(): void {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    this.pending = NO_REQUEST;
  }

  private readonly poll = (): void => {
    if (this.pending !== NO_REQUEST && this.opts.drainInput) this.opts.drainInput();
    if (this.pending !== NO_REQUEST) this.counters.timeouts++;
    const cmd = CYCLE[this.cycleIndex];
    this.cycleIndex = this.cycleIndex === CYCLE.length - 1 ? 0 : this.cycleIndex + 1;
    // An empty reading: the clock moves on whether or not the bike answers.
    this.stamp();
    this.emptyReading();
    this.engine.commitValueReading();
    this.pending = cmd;
    this.counters.requests++;
    encodeRequestInto(this.tx, REQ_READ, cmd);
    this.opts.send(this.tx);
  };

  // --- calibration table --------------------------------------------------

  private askEntry(i: number, gen: number): Promise<number | null> {
    return new Promise((resolve) => {
      if (gen !== this.generation) return resolve(null);
      let answered = false;
      const reply = (v: number): void => {
        answered = true;
        clearTimeout(timer);
        resolve(v);
      };
      const timer = setTimeout(() => {
        this.opts.drainInput?.();
        if (answered) return; // the reply was waiting: answered by the drain
        if (this.calReply === reply) this.calReply = null;
        resolve(null);
      }, this.opts.requestTimeoutMs);
      this.calReply = reply;
      this.counters.requests++;
      const b = new Uint8Array(4);
      encodeRequestInto(b, REQ_CALIBRATION, i);
      this.opts.send(b);
    });
  }

  /** Read the 31 entries, each with retries; on failure keep (or fall back to) the default and try again later. */
  private async loadCalibration(gen: number): Promise<void> {
    let problem: string | null = null;
    for (let i = 0; i < TABLE_ENTRIES && problem === null; i++) {
      let v: number | null = null;
      for (let attempt = 0; attempt < this.opts.requestRetries && v === null; attempt++) {
        v = await this.askEntry(i, gen);
        if (gen !== this.generation) return;
      }
      if (v === null) problem = `entry ${i} not answered after ${this.opts.requestRetries} attempts`;
      else this.loadedTable[i] = v;
    }
    problem ??= tableProblem(this.loadedTable);
    if (problem === null) {
      this.adoptTable();
      return;
    }
    this.counters.calibrationFailures++;
    const first = this.calibrationError === null || this.calibrationSource === 'bike';
    this.calibrationError = problem;
    if (first) {
      this.opts.log.error(
        { err: problem, retryInS: this.opts.calibrationRetryMs / 1000 },
        "bike's resistance calibration table did not load: using the default table, records flagged default_calibration",
      );
    }
    if (this.calibrationSource !== 'bike') this.engine.setDefaultCalibration(true);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (gen !== this.generation) return;
      // Polling pauses while the table is read, as at the head unit's boot.
      this.stopPolling();
      void this.loadCalibration(gen).then(() => gen === this.generation && this.startPolling());
    }, this.opts.calibrationRetryMs);
  }

  private adoptTable(): void {
    const problem = tableProblem(this.loadedTable);
    if (problem !== null) {
      this.calibrationError = problem;
      return;
    }
    this.table.set(this.loadedTable);
    this.calibrationSource = 'bike';
    this.calibrationError = null;
    this.counters.calibrationLoads++;
    this.engine.setDefaultCalibration(false);
    this.opts.log.info({ table: Array.from(this.table) }, "bike's resistance calibration table loaded");
  }
}
