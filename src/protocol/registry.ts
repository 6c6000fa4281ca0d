/**
 * The protocols the agent speaks, behind one door: nothing outside protocol/
 * (but the simulated boards and the board-firmware updater, which speak fwp
 * itself) imports a protocol's modules; scripts/check-structure.js holds the
 * line. Three ways in:
 *
 * - createProtocol: the driver for `serial.protocol`, talking to a board
 *   through the link (the agent, selftest);
 * - createListener: a driver that only listens, fed the bytes of a capture or
 *   a benchmark's buffer in both directions (replay, the hot-path bench);
 * - boardFirmwareOf / detectProtocol: what only one protocol has.
 */
import type { AgentConfig } from '../config/schema.js';
import type { BoardHello } from '../contracts/health.js';
import type { Logger } from '../log/logger.js';
import type { Calibration } from '../metrics/calibration.js';
import type { MetricsEngine } from '../metrics/engine.js';
import type { ProtocolDriver } from './driver.js';
import { FrameSplitter } from '../link/frame-splitter.js';
import { MAX_WIRE_FRAME } from './fwp/codec.js';
import { FwpDriver } from './fwp/driver.js';
import { FwpProtocol } from './fwp/protocol.js';
import { PelotonCmd, PelotonParser } from './peloton/codec.js';
import { PelotonDriver } from './peloton/driver.js';

export const PROTOCOL_NAMES = ['fwp', 'peloton'] as const;
export type ProtocolName = (typeof PROTOCOL_NAMES)[number];

/** The protocol whose board takes firmware updates over the link (fwp 1.1, SPEC.md section 11). */
export type BoardFirmwareProtocol = FwpProtocol;

/** `drainInput` delivers the bytes waiting on the link at once (SerialLink.readNow): drivers ask it before judging a request unanswered. */
export function createProtocol(
  config: AgentConfig,
  engine: MetricsEngine,
  calibration: Calibration,
  send: (b: Uint8Array) => boolean,
  log: Logger,
  drainInput: () => void = () => {},
): ProtocolDriver {
  const s = config.serial;
  if (s.protocol === 'peloton') {
    return new PelotonDriver(engine, {
      mode: 'poll',
      pollIntervalMs: s.pollIntervalMs,
      requestTimeoutMs: s.requestTimeoutMs,
      requestRetries: s.requestRetries,
      calibrationRetryMs: s.calibrationRetryS * 1000,
      send,
      drainInput,
      log,
    });
  }
  return new FwpProtocol(engine, {
    send: (b) => send(b),
    calibration,
    requestTimeoutMs: s.requestTimeoutMs,
    requestRetries: s.requestRetries,
    log,
    drainInput,
  });
}

/** The driver's firmware-update side, when its protocol has one (null otherwise). */
export function boardFirmwareOf(p: ProtocolDriver): BoardFirmwareProtocol | null {
  return p instanceof FwpProtocol ? p : null;
}

/** What a listener made of the bytes it was fed. */
export interface ListenerSummary {
  frames: number;
  samples: number;
  decodeErrors: Record<string, number>;
  /** Frames dropped for exceeding the length cap. */
  oversized: number;
  /** fwp: frames missing by the board's sequence numbers; the polled bus: polls never answered. */
  lostFrames: number;
  hello: BoardHello | null;
  /** The polled bus: where its resistance table came from (a recording of the head unit's boot holds the bike's). */
  calibration: 'bike' | 'default' | null;
}

/** A driver that only listens: it sends nothing, and is fed what crossed the line. */
export interface ProtocolListener {
  readonly name: ProtocolName;
  /** Bytes as they crossed the line, in order; dir 0 from the board, 1 to it. */
  feed(bytes: Buffer, start: number, end: number, dir: number): void;
  /**
   * What the link's delimiter parser hands the driver: one frame without its
   * delimiters (fwp), or one piece of the stream (the polled bus frames itself).
   * The hot-path benchmarks measure from here on, as the agent runs.
   */
  feedFrame(bytes: Buffer, start: number, end: number): void;
  /** Decode failures so far (cheap: for a benchmark's check). */
  errorCount(): number;
  summary(): ListenerSummary;
}

/** The polled bus's values as they were on the wire (power in 0.1 W, cadence rpm, raw resistance), for replay's report. */
export type WireValueListener = (what: 'power' | 'cadence' | 'resistanceRaw', value: number) => void;

export function createListener(
  name: ProtocolName,
  engine: MetricsEngine,
  log: Pick<Logger, 'info' | 'warn' | 'error'>,
  onWireValue?: WireValueListener,
): ProtocolListener {
  if (name === 'peloton') {
    const driver = PelotonDriver.listener(
      engine,
      log,
      onWireValue
        ? (cmd, v) => onWireValue(cmd === PelotonCmd.POWER ? 'power' : cmd === PelotonCmd.CADENCE ? 'cadence' : 'resistanceRaw', v)
        : undefined,
    );
    return {
      name,
      // Both directions, in order: the requests are half the conversation (they give the time).
      feed: (b, start, end) => driver.feed(b, start, end),
      feedFrame: (b, start, end) => driver.feed(b, start, end),
      errorCount: () => driver.parser.errorTotal + driver.counters.unmatched,
      summary: () => {
        const h = driver.health();
        return {
          frames: h.frames,
          samples: h.samples,
          decodeErrors: h.errors,
          oversized: 0,
          lostFrames: driver.counters.timeouts,
          hello: null,
          calibration: driver.calibrationSource,
        };
      },
    };
  }
  // Replies to requests are in the bytes already; nothing is sent.
  const driver = new FwpDriver(engine, () => false);
  const splitter = new FrameSplitter(MAX_WIRE_FRAME - 1, (b, start, end) => driver.decode(b, start, end));
  return {
    name,
    feed: (b, start, end, dir) => {
      if (dir === 0) splitter.feed(b, start, end); // the console's requests are not the board's frames
    },
    feedFrame: (b, start, end) => driver.decode(b, start, end),
    errorCount: () => driver.counters.errors.reduce((a, b) => a + b, 0),
    summary: () => ({
      frames: driver.counters.frames,
      samples: driver.counters.samples,
      decodeErrors: driver.counters.errorsByName(),
      oversized: splitter.oversized,
      lostFrames: driver.counters.lostFrames,
      hello: driver.hello,
      calibration: null,
    }),
  };
}

/** A plain dump that parses as the polled bus (a few frames, no errors) is one; null: no protocol recognised for sure. */
export function detectProtocol(bytes: Uint8Array): ProtocolName | null {
  let frames = 0;
  const p = new PelotonParser({ onRequest: () => frames++, onReply: () => frames++ });
  p.feed(bytes, 0, Math.min(bytes.length, 512));
  return frames >= 4 && p.errorTotal === 0 && p.errors[4] <= 8 ? 'peloton' : null;
}
