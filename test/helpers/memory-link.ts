/**
 * A protocol driver and a simulated board joined in memory: no pty, no
 * serial port. The board's bytes reach the driver's framing a turn later (as
 * a line would deliver them; never re-entrantly inside the driver's own send),
 * framed as the link frames them. For protocol and engine tests; the link
 * itself is tested on real ptys (test/link/).
 */
import { parseConfig } from '../../src/config/load.js';
import type { AgentConfig } from '../../src/config/schema.js';
import { createLogger } from '../../src/log/logger.js';
import { loadCalibration } from '../../src/metrics/calibration.js';
import type { MetricsEngine } from '../../src/metrics/engine.js';
import type { LiveRecord } from '../../src/metrics/record.js';
import { createEngine } from '../../src/pipeline/engine.js';
import type { ProtocolDriver } from '../../src/protocol/driver.js';
import { FrameSplitter } from '../../src/link/frame-splitter.js';
import { createProtocol } from '../../src/protocol/registry.js';
import { SimRunner, type SimulatedBoard } from '../../src/sim/runner.js';

export interface MemoryPipeline<B extends SimulatedBoard> {
  config: AgentConfig;
  engine: MetricsEngine;
  protocol: ProtocolDriver;
  sim: SimRunner<B>;
  records: LiveRecord[];
  /** Bytes the driver sent to the board. */
  sentBytes(): number;
  stop(): Promise<void>;
}

/** The agent's driver for `configJson` (serial.protocol chooses it) talking to `board`, in memory. */
export function memoryPipeline<B extends SimulatedBoard>(board: B, configJson: Record<string, unknown> = {}): MemoryPipeline<B> {
  const config = parseConfig(configJson);
  const calibration = loadCalibration(config.metrics.calibration);
  const records: LiveRecord[] = [];
  const engine = createEngine(
    calibration,
    (r) => {
      // A copy: the engine reuses its record object.
      records.push(Object.assign(Object.create(Object.getPrototypeOf(r) as object) as LiveRecord, r));
    },
    config.metrics,
  );
  let toBoard: ((b: Buffer) => void) | null = null;
  let sent = 0;
  const protocol = createProtocol(
    config,
    engine,
    calibration,
    (b) => {
      sent += b.length;
      const copy = Buffer.from(b);
      setImmediate(() => toBoard?.(copy));
      return toBoard !== null;
    },
    createLogger('silent'),
  );
  const framing = protocol.framing;
  const splitter = framing.kind === 'delimited' ? new FrameSplitter(framing.maxFrame, framing.onFrame) : null;
  const sim = new SimRunner({ board });
  toBoard = sim.startInMemory((b) =>
    setImmediate(() => {
      if (splitter) splitter.feed(b, 0, b.length);
      else if (framing.kind === 'stream') framing.onData(b, 0, b.length);
    }),
  );
  protocol.linkOpened();
  return {
    config,
    engine,
    protocol,
    sim,
    records,
    sentBytes: () => sent,
    stop: async () => {
      protocol.linkLost('test done');
      toBoard = null;
      await sim.stop();
    },
  };
}
