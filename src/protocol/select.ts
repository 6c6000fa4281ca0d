/** The driver for `serial.protocol`. */
import type { AgentConfig } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { Calibration } from '../metrics/calibration.js';
import type { MetricsEngine } from '../metrics/engine.js';
import type { ProtocolDriver } from './driver.js';
import { FwpProtocol } from './fwp/protocol.js';
import { PelotonDriver } from './peloton/driver.js';

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
  return new FwpProtocol(engine, { send: (b) => send(b), calibration, requestTimeoutMs: s.requestTimeoutMs, requestRetries: s.requestRetries, log, drainInput });
}
