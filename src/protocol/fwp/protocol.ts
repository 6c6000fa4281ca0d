/** fwp as the agent sees it: the driver, plus asking the board who it is whenever the port opens. */
import type { Logger } from '../../log/logger.js';
import type { Calibration } from '../../metrics/calibration.js';
import type { MetricsEngine } from '../../metrics/engine.js';
import type { Framing, ProtocolDriver, ProtocolHealth } from '../driver.js';
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
      onHello: (hello, atBoot) => {
        log.info({ hello, atBoot }, atBoot ? 'board booted' : 'board hello');
        if (hello.ticksPerRev !== cal.ticksPerRev) {
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
    this.framing = { kind: 'delimited', maxFrame: MAX_WIRE_FRAME - 1, onFrame: (frame) => driver.onFrame(frame) };
  }

  linkOpened(): void {
    this.driver.linkOpened();
    this.driver
      .request(RequestOp.GET_HELLO, undefined, { timeoutMs: this.opts.requestTimeoutMs, retries: this.opts.requestRetries })
      .catch((err: Error) => this.opts.log.warn({ err: err.message }, 'board did not answer hello'));
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

  board(): Record<string, unknown> {
    return { hello: this.driver.hello, status: this.driver.status };
  }
}
