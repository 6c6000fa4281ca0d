/** Drive a simulated board through the real driver and engine in-process. */
import { loadCalibration } from '../../src/metrics/calibration.js';
import { MetricsEngine, type EngineOptions } from '../../src/metrics/engine.js';
import { recordToJson } from '../../src/metrics/record.js';
import { createSpeedModel } from '../../src/metrics/speed-model.js';
import { FwpDriver } from '../../src/protocol/fwp/driver.js';
import { SimBoard, type SimBoardOptions } from '../../src/sim/board.js';
import type { RideScript } from '../../src/sim/ride-script.js';

export type RecordRow = ReturnType<typeof recordToJson>;

export function makePipeline(script: RideScript, boardOpts: SimBoardOptions = {}, engineOpts: Partial<EngineOptions> = {}) {
  const calibration = loadCalibration('sim-bike-v1');
  const records: RecordRow[] = [];
  const engine = new MetricsEngine({
    calibration,
    speedModel: createSpeedModel(calibration.spec.speedModel),
    onRecord: (r) => records.push(recordToJson(r)),
    ...engineOpts,
  });
  const board = new SimBoard(calibration, script, boardOpts);
  const driver = new FwpDriver(engine, (bytes) => {
    // Requests go straight to the board and its replies straight back, in wire order.
    for (const reply of board.receive(bytes)) feed(reply);
    return true;
  });
  const feed = (bytes: Buffer) => {
    let start = 0;
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i] === 0) {
        driver.decode(bytes, start, i);
        start = i + 1;
      }
    }
  };
  let t = 0;
  return {
    calibration,
    engine,
    board,
    driver,
    records,
    boot() {
      for (const f of board.boot()) feed(f);
    },
    /** Advance the ride by `seconds` in 20 ms steps, feeding every frame to the driver. */
    ride(seconds: number) {
      const end = t + seconds * 1e6;
      while (t < end) {
        t += 20_000;
        for (const f of board.advanceTo(t)) feed(f);
      }
    },
  };
}

/** Records whose time (seconds since the ride started) lies in [from, to). */
export function between(records: RecordRow[], fromS: number, toS: number, t0Us = 0): RecordRow[] {
  return records.filter((r) => (r.tUs as number) - t0Us >= fromS * 1e6 && (r.tUs as number) - t0Us < toS * 1e6);
}
