/**
 * The pipeline, built in one place (with pipeline/board.ts): the metrics
 * engine with its speed model and the configured timeouts, and the listening
 * pipeline (engine and a listen-only protocol driver fed recorded bytes) for
 * replay and the hot-path benchmarks. Nothing here opens a port: serialport is
 * not loaded on this path.
 *
 *   bytes -> protocol driver (readings) -> engine (10 Hz records) -> sinks
 */
import type { Logger } from '../log/logger.js';
import { loadCalibration, type Calibration } from '../metrics/calibration.js';
import { MetricsEngine } from '../metrics/engine.js';
import type { LiveRecord } from '../metrics/record.js';
import { createSpeedModel } from '../metrics/speed-model.js';
import { createListener, type ProtocolListener, type ProtocolName, type WireValueListener } from '../protocol/registry.js';

export interface EngineSettings {
  cadenceTimeoutMs: number;
  staleAfterMs: number;
  expireAfterMs: number;
}

/** The 10 Hz engine for a calibration; `metrics` as configured (the engine's defaults without). */
export function createEngine(calibration: Calibration, onRecord: (r: LiveRecord) => void, metrics?: EngineSettings): MetricsEngine {
  return new MetricsEngine({
    calibration,
    speedModel: createSpeedModel(calibration.spec.speedModel),
    ...(metrics
      ? {
          cadenceTimeoutUs: metrics.cadenceTimeoutMs * 1000,
          staleAfterUs: metrics.staleAfterMs * 1000,
          expireAfterUs: metrics.expireAfterMs * 1000,
        }
      : {}),
    onRecord,
  });
}

/** Engine and listening driver: recorded bytes in, records out (replay, the hot-path bench). */
export interface ListeningPipeline {
  calibration: Calibration;
  engine: MetricsEngine;
  listener: ProtocolListener;
}

export function createListeningPipeline(
  protocol: ProtocolName,
  calibration: Calibration | string,
  onRecord: (r: LiveRecord) => void,
  log: Pick<Logger, 'info' | 'warn' | 'error'>,
  onWireValue?: WireValueListener,
): ListeningPipeline {
  const cal = typeof calibration === 'string' ? loadCalibration(calibration) : calibration;
  const engine = createEngine(cal, onRecord);
  return { calibration: cal, engine, listener: createListener(protocol, engine, log, onWireValue) };
}
