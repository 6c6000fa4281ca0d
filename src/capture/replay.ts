/**
 * Play captured bytes through the real decoder and metrics engine, as fast
 * as possible or at the pace they were recorded. fwp captures hold what the
 * board sent; a polled-bus (peloton) capture or dump holds both directions,
 * and the driver decodes it as a listener: requests give the time, replies
 * are matched to them.
 */
import type { BoardHello, RideSummary } from '../contracts/health.js';
import type { Logger } from '../log/logger.js';
import type { LiveRecord } from '../metrics/record.js';
import { createListeningPipeline } from '../pipeline/engine.js';
import type { ProtocolName } from '../protocol/registry.js';
import { RideTracker } from '../rides/ride-tracker.js';
import type { Capture } from './format.js';

export type ReplayProtocol = ProtocolName;

export interface ReplayOptions {
  protocol: ReplayProtocol;
  calibration: string;
  /** Pace chunks by their timestamps (a plain dump: by the baud rate). */
  realtime: boolean;
  baudRate: number;
  onRecord?: (r: LiveRecord) => void;
  log: Pick<Logger, 'info' | 'warn' | 'error'>;
}

export interface SeriesStats {
  count: number;
  min: number | null;
  max: number | null;
}

export interface ReplayResult {
  protocol: ReplayProtocol;
  format: 'capture' | 'dump';
  bytesFromBoard: number;
  bytesToBoard: number;
  frames: number;
  samples: number;
  decodeErrors: Record<string, number>;
  oversized: number;
  lostFrames: number;
  records: number;
  boardSeconds: number;
  hello: BoardHello | null;
  /** peloton: the values on the wire, per command (power in 0.1 W, cadence rpm, raw resistance). */
  wire: Record<string, SeriesStats> | null;
  /** From the 10 Hz records. */
  series: Record<'powerW' | 'cadenceRpm' | 'resistancePct' | 'hrBpm', SeriesStats>;
  /** peloton: where the resistance table came from (a recording of the head unit's boot holds the bike's). */
  calibration: 'bike' | 'default' | null;
  rides: RideSummary[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class Stats {
  count = 0;
  min = Infinity;
  max = -Infinity;
  add(v: number): void {
    if (v !== v) return;
    this.count++;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }
  json(): SeriesStats {
    // Float32 ring values print as 92.30000305: two decimals say what was measured.
    const r = (v: number): number => Math.round(v * 100) / 100;
    return { count: this.count, min: this.count ? r(this.min) : null, max: this.count ? r(this.max) : null };
  }
}

export async function replayCapture(capture: Capture, opts: ReplayOptions): Promise<ReplayResult> {
  let records = 0;
  let firstT = Number.NaN;
  let lastT = Number.NaN;
  const rides: RideSummary[] = [];
  const series = { powerW: new Stats(), cadenceRpm: new Stats(), resistancePct: new Stats(), hrBpm: new Stats() };
  const wire = { power: new Stats(), cadence: new Stats(), resistanceRaw: new Stats() };
  const { engine, listener } = createListeningPipeline(
    opts.protocol,
    opts.calibration,
    (r) => {
      records++;
      if (firstT !== firstT) firstT = r.tUs;
      lastT = r.tUs;
      series.powerW.add(r.powerW);
      series.cadenceRpm.add(r.cadenceRpm);
      series.resistancePct.add(r.resistancePct);
      series.hrBpm.add(r.hrBpm);
      tracker.onRecord(r);
      opts.onRecord?.(r);
    },
    opts.log,
    (what, v) => wire[what].add(v),
  );
  const tracker = new RideTracker({
    idleEndMs: 120_000,
    autoStart: true,
    store: null,
    resetTotals: () => engine.resetTotals(),
    onEnded: (s) => rides.push(s),
    log: opts.log,
  });
  const feed = (b: Buffer, dir: number): void => listener.feed(b, 0, b.length, dir);

  let fromBoard = 0;
  let toBoard = 0;
  const t0 = performance.now();
  const plain = capture.header === null;
  for (const c of capture.chunks) {
    if (c.dir === 1) toBoard += c.bytes.length;
    if (opts.realtime && plain) {
      // A dump has no timestamps: play it at line speed (10 bits per byte), 100 ms at a time.
      const perSlice = Math.max(1, Math.round(opts.baudRate / 10 / 10));
      for (let at = 0; at < c.bytes.length; at += perSlice) {
        const slice = c.bytes.subarray(at, at + perSlice);
        feed(slice, c.dir);
        fromBoard += slice.length;
        await sleep(100);
      }
      continue;
    }
    if (opts.realtime) {
      const wait = c.tMs - (performance.now() - t0);
      if (wait > 0) await sleep(wait);
    }
    if (c.dir === 0) fromBoard += c.bytes.length;
    feed(c.bytes, c.dir);
  }
  // A ride still open at the end of the capture ends there (onEnded collects it).
  tracker.end('shutdown');
  return {
    protocol: opts.protocol,
    format: plain ? 'dump' : 'capture',
    bytesFromBoard: fromBoard,
    bytesToBoard: toBoard,
    records,
    boardSeconds: records > 0 ? (lastT - firstT) / 1e6 : 0,
    series: {
      powerW: series.powerW.json(),
      cadenceRpm: series.cadenceRpm.json(),
      resistancePct: series.resistancePct.json(),
      hrBpm: series.hrBpm.json(),
    },
    rides,
    ...listener.summary(),
    wire:
      opts.protocol === 'peloton'
        ? { power: wire.power.json(), cadence: wire.cadence.json(), resistanceRaw: wire.resistanceRaw.json() }
        : null,
  };
}
