/**
 * Protocol drivers and the engine against simulated boards in memory (no
 * pty): the agent's own driver for each protocol, as createProtocol builds it,
 * talking to the board the simulator plays.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadCalibration } from '../../src/metrics/calibration.js';
import type { PelotonBoardInfo } from '../../src/contracts/health.js';
import { RequestOp } from '../../src/protocol/fwp/codec.js';
import { boardFirmwareOf } from '../../src/protocol/registry.js';
import { SimBoard } from '../../src/sim/board.js';
import { PelotonSimBoard } from '../../src/sim/peloton-board.js';
import type { RideScript } from '../../src/sim/ride-script.js';
import { memoryPipeline, type MemoryPipeline } from '../helpers/memory-link.js';
import { waitFor } from '../helpers/wait.js';
import type { SimulatedBoard } from '../../src/sim/runner.js';

const STEADY: RideScript = { name: 'steady', loop: true, segments: [{ durationS: 600, cadenceRpm: 90, resistancePct: 45, hrBpm: 140 }] };
const open: Array<MemoryPipeline<SimulatedBoard>> = [];
afterEach(async () => {
  for (const p of open.splice(0)) await p.stop();
});
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

describe('fwp in memory', () => {
  it('the driver asks the board who it is, records flow at 10 Hz with the ride’s figures, and requests are answered', async () => {
    const p = memoryPipeline(new SimBoard(loadCalibration('sim-bike-v1'), STEADY, { seed: 5 }));
    open.push(p);
    await waitFor(() => p.protocol.board().hello !== null, 'hello', 5000);
    expect(p.protocol.board().hello).toMatchObject({ firmware: '1.0.0', ticksPerRev: 8, sampleRateHz: 50 });
    await waitFor(() => p.records.length >= 40, '4 s of records', 10_000);
    const steady = p.records.slice(20);
    expect(Math.abs(median(steady.map((r) => r.cadenceRpm)) - 90)).toBeLessThan(1);
    expect(median(steady.map((r) => r.hrBpm))).toBe(140);
    // Records are 100 ms of board time apart.
    for (let i = 1; i < p.records.length; i++) expect(p.records[i].tUs - p.records[i - 1].tUs).toBe(100_000);
    const fw = boardFirmwareOf(p.protocol)!;
    const reply = await fw.driver.request(RequestOp.GET_HELLO, undefined, { timeoutMs: 500, retries: 1 });
    expect(reply.length).toBeGreaterThan(0);
    expect(p.protocol.health()).toMatchObject({ name: 'fwp', lostFrames: 0, requestTimeouts: 0 });
  });
});

describe('the polled bus in memory', () => {
  it('the driver reads the bike’s resistance table, then polls; power and cadence are the bike’s', async () => {
    const p = memoryPipeline(new PelotonSimBoard(loadCalibration('peloton-v1'), STEADY, { seed: 5 }), {
      serial: { protocol: 'peloton', requestTimeoutMs: 100, requestRetries: 3 },
    });
    open.push(p);
    await waitFor(() => (p.protocol.board() as PelotonBoardInfo).calibration.source === 'bike', 'the bike’s table', 10_000);
    await waitFor(() => p.records.filter((r) => r.cadenceRpm === r.cadenceRpm).length >= 20, 'records with cadence', 10_000);
    const withCadence = p.records.filter((r) => r.cadenceRpm === r.cadenceRpm).slice(5);
    expect(Math.abs(median(withCadence.map((r) => r.cadenceRpm)) - 90)).toBeLessThanOrEqual(1);
    expect(median(withCadence.map((r) => r.powerW))).toBeGreaterThan(0);
    expect(p.protocol.health().requestTimeouts).toBe(0);
    expect(p.sentBytes()).toBeGreaterThan(0);
  });
});
