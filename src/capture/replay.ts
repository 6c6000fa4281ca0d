/**
 * Play captured bytes through the real decoder and metrics engine, as fast
 * as possible or at the pace they were recorded.
 */
import type { Logger } from '../log/logger.js';
import { loadCalibration } from '../metrics/calibration.js';
import { MetricsEngine } from '../metrics/engine.js';
import type { LiveRecord } from '../metrics/record.js';
import { createSpeedModel } from '../metrics/speed-model.js';
import { MAX_WIRE_FRAME } from '../protocol/fwp/codec.js';
import { FwpDriver } from '../protocol/fwp/driver.js';
import { RideTracker } from '../rides/ride-tracker.js';
import type { RideSummary } from '../spool/rides.js';
import type { Capture } from './format.js';

export interface ReplayOptions {
  calibration: string;
  /** Pace chunks by their timestamps (a plain dump: by the baud rate). */
  realtime: boolean;
  baudRate: number;
  onRecord?: (r: LiveRecord) => void;
  log: Pick<Logger, 'info' | 'warn' | 'error'>;
}

export interface ReplayResult {
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
  hello: FwpDriver['hello'];
  rides: RideSummary[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function replayCapture(capture: Capture, opts: ReplayOptions): Promise<ReplayResult> {
  const calibration = loadCalibration(opts.calibration);
  let records = 0;
  let firstT = Number.NaN;
  let lastT = Number.NaN;
  const rides: RideSummary[] = [];
  const tracker = new RideTracker({
    idleEndMs: 120_000,
    autoStart: true,
    store: null,
    resetTotals: () => engine.resetTotals(),
    onEnded: (s) => rides.push(s),
    log: opts.log,
  });
  const engine: MetricsEngine = new MetricsEngine({
    calibration,
    speedModel: createSpeedModel(calibration.spec.speedModel),
    onRecord: (r) => {
      records++;
      if (firstT !== firstT) firstT = r.tUs;
      lastT = r.tUs;
      tracker.onRecord(r);
      opts.onRecord?.(r);
    },
  });
  // Replies to requests are in the capture already; nothing is sent.
  const driver = new FwpDriver(engine, () => false);
  const maxFrame = MAX_WIRE_FRAME - 1;
  const carry = Buffer.alloc(maxFrame);
  let carried = 0;
  let discarding = false;
  let oversized = 0;
  const feed = (b: Buffer): void => {
    let start = 0;
    for (let i = 0; i < b.length; i++) {
      if (b[i] !== 0) continue;
      if (discarding) discarding = false;
      else if (carried > 0) {
        const room = maxFrame - carried;
        if (i - start > room) oversized++;
        else {
          b.copy(carry, carried, start, i);
          driver.decode(carry, 0, carried + (i - start));
        }
      } else if (i - start > maxFrame) oversized++;
      else driver.decode(b, start, i);
      carried = 0;
      start = i + 1;
    }
    if (discarding || start >= b.length) return;
    const tail = b.length - start;
    if (carried + tail > maxFrame) {
      oversized++;
      discarding = true;
      carried = 0;
      return;
    }
    b.copy(carry, carried, start);
    carried += tail;
  };

  let fromBoard = 0;
  let toBoard = 0;
  const t0 = performance.now();
  const plain = capture.header === null;
  for (const c of capture.chunks) {
    if (c.dir === 1) {
      toBoard += c.bytes.length;
      continue;
    }
    if (opts.realtime && plain) {
      // A dump has no timestamps: play it at line speed (10 bits per byte), 100 ms at a time.
      const perSlice = Math.max(1, Math.round(opts.baudRate / 10 / 10));
      for (let at = 0; at < c.bytes.length; at += perSlice) {
        feed(c.bytes.subarray(at, at + perSlice));
        fromBoard += Math.min(perSlice, c.bytes.length - at);
        await sleep(100);
      }
      continue;
    }
    if (opts.realtime) {
      const wait = c.tMs - (performance.now() - t0);
      if (wait > 0) await sleep(wait);
    }
    fromBoard += c.bytes.length;
    feed(c.bytes);
  }
  // A ride still open at the end of the capture ends there (onEnded collects it).
  tracker.end('shutdown');
  return {
    format: plain ? 'dump' : 'capture',
    bytesFromBoard: fromBoard,
    bytesToBoard: toBoard,
    frames: driver.counters.frames,
    samples: driver.counters.samples,
    decodeErrors: driver.counters.errorsByName(),
    oversized,
    lostFrames: driver.counters.lostFrames,
    records,
    boardSeconds: records > 0 ? (lastT - firstT) / 1e6 : 0,
    hello: driver.hello,
    rides,
  };
}
