import { loadCalibration } from '../metrics/calibration.js';
import { SimBoard } from '../sim/board.js';
import { BootloaderBoard } from '../sim/bootloader-board.js';
import { DEMO_RIDE, loadRideScript } from '../sim/ride-script.js';
import { PelotonSimBoard } from '../sim/peloton-board.js';
import { SimRunner, type SimulatedBoard } from '../sim/runner.js';

export interface SimulateOptions {
  script?: string;
  calibration: string;
  rate: number;
  seed: number;
  baud: number;
  stdout?: boolean;
  dir?: string;
  duration?: number;
  noise: number;
  badCrc: number;
  drop: number;
  unplugEvery?: number;
  unplugFor: number;
  clockStart: number;
  protocol: 'fwp' | 'peloton';
  refuseCalibration?: boolean;
  /** Exit when stdin closes: started by `run --simulate`, which may die without stopping it. */
  withParent?: boolean;
  /** fwp: a board with a bootloader and two image slots kept in this file (firmware updates). */
  flash?: string;
  boardModel: number;
  /** Deliver the console's bytes at the line rate (baud / 10 bytes per second), as a UART would. */
  paced?: boolean;
  /** Fraction of FW_CHUNK frames the line corrupts on their way to the board. */
  chunkNoise: number;
}

/** Human messages go to stderr so stdout stays the data channel (pty path or raw bytes). */
function note(event: string, detail: Record<string, unknown>): void {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), svc: 'bike-simulator', msg: event, ...detail })}\n`);
}

export async function simulateCommand(o: SimulateOptions): Promise<void> {
  const script = o.script ? loadRideScript(o.script) : DEMO_RIDE;
  const calibration = loadCalibration(o.calibration);
  const board: SimulatedBoard & { counters: object } =
    o.protocol === 'peloton'
      ? new PelotonSimBoard(calibration, script, {
          seed: o.seed,
          faults: { noiseBytesPerS: o.noise, badChecksumRate: o.badCrc, dropRate: o.drop, refuseCalibration: o.refuseCalibration === true },
        })
      : o.flash
        ? new BootloaderBoard(calibration, script, {
            flashFile: o.flash,
            boardModel: o.boardModel,
            chunkNoiseRate: o.chunkNoise,
            seed: o.seed,
            app: {
              sampleRateHz: o.rate,
              clockStartUs: o.clockStart,
              faults: { noiseBytesPerS: o.noise, badCrcRate: o.badCrc, dropRate: o.drop },
            },
          })
        : new SimBoard(calibration, script, {
            sampleRateHz: o.rate,
            seed: o.seed,
            clockStartUs: o.clockStart,
            faults: { noiseBytesPerS: o.noise, badCrcRate: o.badCrc, dropRate: o.drop },
          });
  const runner = new SimRunner<SimulatedBoard>({
    board,
    durationS: o.duration,
    ...(o.paced ? { lineBytesPerS: o.baud / 10, tickMs: 5 } : {}),
    unplug: o.unplugEvery ? { everyS: o.unplugEvery, forS: o.unplugFor } : undefined,
    onEvent: note,
  });
  if (o.stdout) {
    runner.startOnStream(process.stdout);
    note('simulator streaming to stdout', { script: script.name, rateHz: o.rate });
  } else {
    const path = await runner.startOnPty(o.dir, o.protocol === 'peloton' && o.baud === 115200 ? 19200 : o.baud);
    process.stdout.write(`${path}\n`);
    note('simulator ready', { path, script: script.name, rateHz: o.rate });
  }
  const stop = (): void => void runner.stop();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (o.withParent) {
    process.stdin.on('close', stop);
    process.stdin.on('end', stop);
    process.stdin.resume();
  }
  await runner.done;
  note('simulator stopped', { ...board.counters });
}
