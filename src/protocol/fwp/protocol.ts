/** fwp as the agent sees it: the driver, plus asking the board who it is whenever the port opens. */
import type { Logger } from '../../log/logger.js';
import type { Calibration } from '../../metrics/calibration.js';
import type { MetricsEngine } from '../../metrics/engine.js';
import type { FwpBoardInfo } from '../../contracts/health.js';
import type { BoardHello, ProtocolHealth } from '../../contracts/health.js';
import type { Framing, ProtocolDriver } from '../driver.js';
import { LogLevel, MAX_WIRE_FRAME, RequestOp } from './codec.js';
import { FwpDriver } from './driver.js';

export interface FwpProtocolOptions {
  send: (bytes: Buffer) => boolean;
  calibration: Calibration;
  requestTimeoutMs: number;
  requestRetries: number;
  log: Logger;
  /** The link's readNow (see FwpDriverEvents.drainInput). */
  drainInput?: () => void;
}

export class FwpProtocol implements ProtocolDriver {
  readonly name = 'fwp';
  readonly driver: FwpDriver;
  readonly framing: Framing;

  constructor(
    engine: MetricsEngine,
    private readonly opts: FwpProtocolOptions,
  ) {
    const log = opts.log;
    const cal = opts.calibration;
    this.driver = new FwpDriver(engine, opts.send, {
      ...(opts.drainInput ? { drainInput: opts.drainInput } : {}),
      onProgress: (next, status, free) => this.progressListener?.(next, status, free),
      onHello: (hello, atBoot) => {
        log.info({ hello, atBoot }, atBoot ? 'board booted' : 'board hello');
        for (const l of this.helloListeners) l(hello);
        // The bootloader (a firmware update) measures nothing: its HELLO says 0 ticks per revolution.
        if (hello.bootMode === 'application' && hello.ticksPerRev !== cal.ticksPerRev) {
          log.error(
            { boardTicksPerRev: hello.ticksPerRev, calibrationTicksPerRev: cal.ticksPerRev, calibration: cal.model },
            'board and calibration disagree on flywheel ticks per revolution: wrong calibration for this bike',
          );
        }
      },
      onLog: (level, text) => {
        const fn = level >= LogLevel.ERROR ? 'error' : level === LogLevel.WARN ? 'warn' : level === LogLevel.INFO ? 'info' : 'debug';
        log[fn]({ board: true }, text);
      },
    });
    const driver = this.driver;
    this.framing = { kind: 'delimited', maxFrame: MAX_WIRE_FRAME - 1, onFrame: (b, start, end) => driver.decode(b, start, end) };
  }

  private progressListener: ((next: number, status: number, free: number) => void) | null = null;
  private readonly helloListeners: Array<(hello: BoardHello) => void> = [];

  /** Hear every HELLO (at boot or asked for): the board update offers bundled images then. */
  onHello(l: (hello: BoardHello) => void): void {
    this.helloListeners.push(l);
  }

  /** Who hears FW_PROGRESS (the board update's transfer), or nobody. */
  setProgressListener(l: ((next: number, status: number, free: number) => void) | null): void {
    this.progressListener = l;
  }

  linkOpened(): void {
    this.driver.linkOpened();
    this.driver
      .request(RequestOp.GET_HELLO, undefined, { timeoutMs: this.opts.requestTimeoutMs, retries: this.opts.requestRetries })
      .catch((err: Error) => this.opts.log.warn({ err }, 'board did not answer hello'));
  }

  linkLost(reason: string): void {
    this.driver.cancelAll(reason);
  }

  health(): ProtocolHealth {
    const c = this.driver.counters;
    return {
      name: 'fwp',
      frames: c.frames,
      samples: c.samples,
      errors: c.errorsByName(),
      lostFrames: c.lostFrames,
      seqGaps: c.seqGaps,
      boardResets: c.boardResets,
      requestTimeouts: c.requestTimeouts,
    };
  }

  board(): FwpBoardInfo {
    return { hello: this.driver.hello, status: this.driver.status };
  }
}
