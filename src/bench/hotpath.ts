/**
 * Measures the receive hot path: the bytes as read -> frame splitter -> frame
 * decode -> driver -> ring buffer -> 10 Hz engine, over frames generated
 * beforehand so that the measured loop runs only agent code. Used by
 * scripts/bench/hotpath.js and by the zero-allocation test; counts GC events
 * with a PerformanceObserver.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { LiveRecord } from '../metrics/record.js';
import { createListeningPipeline } from '../pipeline/engine.js';
import { SimBoard } from '../sim/board.js';
import { pelotonWireStream } from '../sim/peloton-board.js';
import type { RideScript } from '../sim/ride-script.js';

export interface HotPathResult {
  frames: number;
  records: number;
  seconds: number;
  framesPerS: number;
  nsPerFrame: number;
  gcEvents: number;
  heapDeltaBytes: number;
  decodeErrors: number;
}

const RIDE: RideScript = {
  name: 'bench',
  loop: true,
  segments: [
    { durationS: 120, cadenceRpm: [70, 100], resistancePct: [30, 60], hrBpm: [110, 150] },
    { durationS: 60, cadenceRpm: 95, resistancePct: 55, hrBpm: 155 },
    { durationS: 120, cadenceRpm: [100, 65], resistancePct: [60, 25], hrBpm: [150, 115] },
  ],
};

const QUIET = { info() {}, warn() {}, error() {} };

/** One coalesced serial read at 50 Hz: five 28-byte frames (100 ms of the line). */
const READ_BYTES = 140;

/** A full GC, without needing --expose-gc on the command line. */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/**
 * Run `warm` (so everything on the path is optimized), collect garbage, then
 * time `run` while counting GC events and heap growth. `reset` clears the
 * caller's counters between the two.
 */
async function measured(
  warm: () => void,
  run: () => void,
  reset: () => void,
): Promise<{ seconds: number; gcEvents: number; heapBefore: number; heapAfter: number }> {
  warm();
  await sleep(50);
  // Start from an empty young generation, so a GC during the run can only
  // come from the run itself.
  collectGarbage();
  await sleep(20);
  let gcEvents = 0;
  const obs = new PerformanceObserver((list) => {
    gcEvents += list.getEntries().length;
  });
  obs.observe({ entryTypes: ['gc'] });
  await sleep(20);
  gcEvents = 0;
  reset();
  const heapBefore = process.memoryUsage().heapUsed;
  const t0 = process.hrtime.bigint();
  run();
  const t1 = process.hrtime.bigint();
  const heapAfter = process.memoryUsage().heapUsed;
  // GC entries are delivered asynchronously: give the observer a turn.
  await sleep(100);
  obs.disconnect();
  return { seconds: Number(t1 - t0) / 1e9, gcEvents, heapBefore, heapAfter };
}

/**
 * @param sink an extra record sink to include in the measurement (the spool's
 *   append, say), called for every record after counting it
 */
export async function measureHotPath(frames: number, warmupFrames = 200_000, sink?: (r: LiveRecord) => void): Promise<HotPathResult> {
  let records = 0;
  const { calibration, listener } = createListeningPipeline(
    'fwp',
    'sim-bike-v1',
    sink
      ? (r) => {
          records++;
          sink(r);
        }
      : () => {
          records++;
        },
    QUIET,
  );
  // Start near the 32-bit clock wrap so the measured run crosses it.
  const board = new SimBoard(calibration, RIDE, { clockStartUs: 2 ** 32 - 600e6, seed: 3 });
  const warm = board.generateSamples(warmupFrames);
  const data = board.generateSamples(frames);

  // From the bytes read on, as the agent runs: the wire bytes of frames `from`..`to` in reads of READ_BYTES (what
  // the link's coalesced read holds at 50 Hz), so reads end inside frames as they do on the line.
  const feed = (d: { bytes: Buffer; starts: Uint32Array; ends: Uint32Array }, from: number, to: number): void => {
    const { bytes, starts, ends } = d;
    const end = ends[to - 1] + 1;
    for (let at = starts[from]; at < end; at += READ_BYTES) listener.feed(bytes, at, Math.min(end, at + READ_BYTES), 0);
  };
  // Warm up through many ordinary calls so every function on the path,
  // including this loop, is optimized before measuring (not only on-stack
  // replaced), and no compilation happens inside the measured run.
  const chunk = 5000;
  const m = await measured(
    () => {
      for (let i = 0; i < warmupFrames; i += chunk) feed(warm, i, Math.min(warmupFrames, i + chunk));
    },
    () => feed(data, 0, frames),
    () => (records = 0),
  );
  const { seconds, gcEvents, heapAfter, heapBefore } = m;
  return {
    frames,
    records,
    seconds,
    framesPerS: Math.round(frames / seconds),
    nsPerFrame: Number(((seconds * 1e9) / frames).toFixed(1)),
    gcEvents,
    heapDeltaBytes: heapAfter - heapBefore,
    decodeErrors: listener.errorCount(),
  };
}

/**
 * The polled bus's hot path: byte parser -> peloton driver -> ring buffer ->
 * 10 Hz engine, over a recorded-style stream of both directions (the driver
 * in listen mode, as replay runs it; poll mode adds one timer per poll).
 */
export async function measurePelotonHotPath(
  frames: number,
  warmupFrames = 200_000,
  sink?: (r: LiveRecord) => void,
): Promise<HotPathResult> {
  let records = 0;
  const { listener } = createListeningPipeline(
    'peloton',
    'peloton-v1',
    (r) => {
      records++;
      if (sink) sink(r);
    },
    QUIET,
  );
  const warm = pelotonWireStream(warmupFrames / 2);
  const data = pelotonWireStream(frames / 2);
  const feed = (d: { bytes: Buffer; starts: Uint32Array; ends: Uint32Array }, from: number, to: number): void => {
    const { bytes, starts, ends } = d;
    for (let i = from; i < to; i++) listener.feedFrame(bytes, starts[i], ends[i]);
  };
  const chunk = 5000;
  const m = await measured(
    () => {
      for (let i = 0; i < warm.starts.length; i += chunk) feed(warm, i, Math.min(warm.starts.length, i + chunk));
    },
    () => feed(data, 0, data.starts.length),
    () => (records = 0),
  );
  const { seconds, gcEvents, heapAfter, heapBefore } = m;
  return {
    frames: data.starts.length,
    records,
    seconds,
    framesPerS: Math.round(data.starts.length / seconds),
    nsPerFrame: Number(((seconds * 1e9) / data.starts.length).toFixed(1)),
    gcEvents,
    heapDeltaBytes: heapAfter - heapBefore,
    decodeErrors: listener.errorCount(),
  };
}
