/**
 * The board side of the pipeline for a configuration: engine, protocol
 * driver and serial link, wired once for the agent (agent/agent.ts) and
 * selftest. The agent adds the spool, uploader, rides and API around it;
 * fleet-sim builds only the delivery half (spool + uploader) per simulated bike.
 *
 *   link (bytes) -> protocol driver (readings) -> engine (10 Hz records) -> sinks
 */
import type { AgentConfig } from '../config/schema.js';
import { SerialLink, type SerialLinkOptions } from '../link/serial-link.js';
import type { Logger } from '../log/logger.js';
import { loadCalibration, type Calibration } from '../metrics/calibration.js';
import type { MetricsEngine } from '../metrics/engine.js';
import type { LiveRecord } from '../metrics/record.js';
import type { ProtocolDriver } from '../protocol/driver.js';
import { createProtocol } from '../protocol/registry.js';
import { createEngine } from './engine.js';

/** Engine, driver and link of a console: what reads the board. */
export interface BoardPipeline {
  calibration: Calibration;
  engine: MetricsEngine;
  protocol: ProtocolDriver;
  link: SerialLink;
}

/**
 * The board side of the pipeline for a configuration. The driver writes
 * through the link and drains it before judging a request unanswered; the
 * link is made after the driver (it takes the driver's framing), so both are
 * bound late here, once.
 */
export function createBoardPipeline(
  config: AgentConfig,
  log: Logger,
  onRecord: (r: LiveRecord) => void,
  link: Partial<Pick<SerialLinkOptions, 'reopenBaseMs' | 'reopenCapMs' | 'silenceTimeoutMs' | 'readCoalesceMs' | 'heartbeat'>> = {},
): BoardPipeline {
  const calibration = loadCalibration(config.metrics.calibration);
  const engine = createEngine(calibration, onRecord, config.metrics);
  let serial: SerialLink | null = null;
  const protocol = createProtocol(
    config,
    engine,
    calibration,
    (b) => serial?.write(b as Buffer) ?? false,
    log,
    () => serial?.readNow(),
  );
  const s = config.serial;
  serial = new SerialLink({
    path: s.path,
    baudRate: s.baudRate,
    framing: protocol.framing,
    reopenBaseMs: s.reopenBaseMs,
    reopenCapMs: s.reopenCapMs,
    silenceTimeoutMs: s.silenceTimeoutMs,
    readCoalesceMs: s.readCoalesceMs,
    ...link,
  });
  return { calibration, engine, protocol, link: serial };
}
