/**
 * The agent as the original bike's head unit, against the simulated bike on
 * a real pty pair: polling, a bike that stops answering, garbage on the line,
 * a calibration table that will not load.
 */
import type { PelotonBoardInfo } from '../../src/contracts/health.js';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Agent } from '../../src/agent/agent.js';
import { loadCalibration } from '../../src/metrics/calibration.js';
import { RecordFlag } from '../../src/metrics/record.js';
import { DEFAULT_RESISTANCE_TABLE } from '../../src/protocol/peloton/resistance.js';
import { PelotonSimBoard, type PelotonSimOptions } from '../../src/sim/peloton-board.js';
import type { RideScript } from '../../src/sim/ride-script.js';
import { SimRunner } from '../../src/sim/runner.js';
import { startAgent, tempDir } from '../helpers/agent.js';
import type { RecordRow } from '../helpers/ride.js';
import { waitFor } from '../helpers/wait.js';
import { cli } from '../helpers/cli.js';

const STEADY: RideScript = { name: 'steady', loop: true, segments: [{ durationS: 600, cadenceRpm: 85, resistancePct: 40, hrBpm: 0 }] };
const POWER = 0xf544;
const RAW = 0xf54a;
const CADENCE = 0xf541;

/** The agent's serial settings for the simulated bike: quick reopens, the polled bus's timeouts. */
const PELOTON_SERIAL = {
  protocol: 'peloton',
  reopenBaseMs: 50,
  reopenCapMs: 200,
  silenceTimeoutMs: 5000,
  requestTimeoutMs: 100,
  requestRetries: 3,
  calibrationRetryS: 1,
};

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function bike(opts: PelotonSimOptions = {}, agentOverrides: Record<string, unknown> = {}) {
  const board = new PelotonSimBoard(loadCalibration('peloton-v1'), STEADY, opts);
  const sim = new SimRunner({ board });
  const path = await sim.startOnPty(tempDir('pelo-pty-'), 19200);
  const { agent, records } = startAgent(path, {
    serial: {
      path,
      ...PELOTON_SERIAL,
      ...agentOverrides,
    },
  });
  cleanups.push(async () => {
    await agent.stop();
    await sim.stop();
  });
  return { board, sim, agent, records };
}

const board = (a: Agent) => (a.health().board as PelotonBoardInfo).calibration;
const flags = (r: RecordRow) => r.flags as number;

/** The bike in its own process, as a real bike is (it answers while the agent's event loop is held), and an agent that has read its table. */
async function bikeInItsOwnProcess(prefix: string, serial: Record<string, unknown> = {}): Promise<{ agent: Agent; dir: string }> {
  const dir = tempDir(prefix);
  const sim = cli(['simulate', '--protocol', 'peloton', '--dir', dir]);
  cleanups.push(async () => {
    sim.proc.kill('SIGTERM');
    await sim.exited;
  });
  await waitFor(() => sim.stdout.length > 0, 'simulator pty', 10_000);
  const path = sim.stdout[0].trim();
  const { agent } = startAgent(path, {
    serial: {
      path,
      ...PELOTON_SERIAL,
      ...serial,
    },
  });
  cleanups.push(() => agent.stop());
  await waitFor(() => board(agent).source === 'bike', 'calibration table loaded', 10_000);
  return { agent, dir };
}

describe('peloton driver on a pty', () => {
  it('reads the calibration table, then polls power, raw resistance, cadence every 100 ms; the figures match the bike', async () => {
    const table = DEFAULT_RESISTANCE_TABLE.map((v, i) => v + 2 * i); // this bike's own, not the default
    const { board: sim, agent, records } = await bike({ table });
    await waitFor(() => board(agent).source === 'bike', 'calibration table loaded', 10_000);
    expect(board(agent).table).toEqual(table);
    expect(sim.requestLog.slice(0, 31)).toEqual(Array.from({ length: 31 }, (_, i) => 0xf700 | i));
    const n0 = sim.counters.requests;
    await sleep(3000);
    const polls = sim.counters.requests - n0;
    // 10 polls a second (timer jitter aside).
    expect(polls).toBeGreaterThanOrEqual(27);
    expect(polls).toBeLessThanOrEqual(32);
    const cycle = sim.requestLog.slice(31);
    for (let i = 0; i < cycle.length; i++) expect(cycle[i]).toBe([POWER, RAW, CADENCE][i % 3]);
    const h = agent.health();
    expect(h.protocol).toMatchObject({ name: 'peloton', requestTimeouts: 0, errors: { checksum: 0, unmatched: 0, stray: 0 } });
    expect(h.healthy).toBe(true);
    // 10 Hz records with the bike's values: 85 rpm, 40 % through this bike's table, its power.
    const last = records.slice(-10);
    for (const r of last) {
      expect(r.cadenceRpm).toBe(85);
      expect(r.resistancePct as number).toBeCloseTo(40, 0);
      expect(r.powerW).toBe(sim.wireValue(0x44) / 10);
      expect(r.speedKmh as number).toBeGreaterThan(20);
      expect(r.hrBpm).toBeNull();
      expect(flags(r) & (RecordFlag.DEFAULT_CALIBRATION | RecordFlag.POWER_STALE | RecordFlag.CADENCE_STALE | RecordFlag.HR_STALE)).toBe(0);
    }
    for (let i = 1; i < records.length; i++) expect((records[i].tUs as number) - (records[i - 1].tUs as number)).toBe(100_000);
    expect(records.length).toBeGreaterThanOrEqual(25);
  });

  it('an agent held up (a slow commit, a busy CPU) does not count a poll unanswered when its reply is waiting on the line', async () => {
    const { agent } = await bikeInItsOwnProcess('pelo-stall-');
    await sleep(500);
    const timeouts0 = agent.health().protocol.requestTimeouts;
    // Right after a poll goes out (a record is made just before each poll is sent), hold the
    // event loop for 5 poll periods, 5 times: the reply is in the kernel's buffer when the next
    // poll's timer runs, which libuv runs before it reads the port.
    let stalls = 0;
    agent.addRecordSink(() => {
      if (stalls >= 5) return;
      stalls++;
      setImmediate(() => {
        const until = performance.now() + 500;
        while (performance.now() < until) {
          // held up
        }
      });
    });
    await waitFor(() => stalls >= 5, '5 stalls', 10_000);
    await sleep(500);
    const p = agent.health().protocol;
    expect(p.requestTimeouts - timeouts0).toBe(0);
    expect(p.errors).toMatchObject({ checksum: 0, unmatched: 0 });
  });

  it("polls reach the bike while libuv's threadpool is held (slow file I/O): they are written on the event loop", async () => {
    // Polls 250 ms apart: the bike, a process on a loaded machine, has time to answer each; a poll held in the pool does not.
    const { agent, dir } = await bikeInItsOwnProcess('pelo-pool-', { pollIntervalMs: 250 });
    const before = agent.health().protocol;
    // Every threadpool thread (4, libuv's default) waits in open() on a FIFO nobody writes, without using the CPU.
    const fifos = [0, 1, 2, 3].map((i) => join(dir, `fifo-${i}`));
    for (const f of fifos) execFileSync('mkfifo', [f]);
    const held = fifos.map((f) => open(f, 'r'));
    try {
      await sleep(1500);
    } finally {
      for (const f of fifos) closeSync(openSync(f, 'w'));
      for (const h of held) await (await h).close();
    }
    const after = agent.health().protocol;
    expect(after.requestTimeouts - before.requestTimeouts).toBe(0);
    expect(after.frames - before.frames).toBeGreaterThanOrEqual(4); // replies: 6 polls in 1.5 s
  });

  it('a bike that stops answering mid-ride: records go on at 10 Hz, values held and flagged stale, then withdrawn; all recover when it answers again', async () => {
    const { board: sim, agent, records } = await bike();
    await waitFor(() => records.length > 20 && records[records.length - 1].powerW !== null, 'riding', 10_000);
    sim.setFaults({ silent: true });
    const from = records.length;
    await sleep(6500);
    sim.setFaults({ silent: false });
    const silentEnd = records.length;
    await sleep(1500);
    const during = records.slice(from, silentEnd);
    // No gap: a record every 100 ms while the bike was silent.
    expect(during.length).toBeGreaterThanOrEqual(60);
    for (let i = 1; i < during.length; i++) expect((during[i].tUs as number) - (during[i - 1].tUs as number)).toBe(100_000);
    // Held with the stale flag after 1 s, withdrawn (null) after 5 s: never invented.
    const stale = during.filter((r) => flags(r) & RecordFlag.POWER_STALE);
    expect(stale.length).toBeGreaterThan(30);
    expect(stale.some((r) => r.powerW !== null)).toBe(true);
    expect(during.slice(-5).every((r) => r.powerW === null && r.cadenceRpm === null)).toBe(true);
    expect(agent.health().protocol.requestTimeouts).toBeGreaterThanOrEqual(55);
    // And back.
    const after = records.slice(-5);
    for (const r of after) {
      expect(r.powerW).not.toBeNull();
      expect(r.cadenceRpm).toBe(85);
      expect(flags(r) & (RecordFlag.POWER_STALE | RecordFlag.CADENCE_STALE)).toBe(0);
    }
  });

  it('garbage on the line and corrupted replies: bad frames are counted and skipped, the figures stay right', async () => {
    const { board: sim, agent, records } = await bike({ seed: 7, faults: { noiseBytesPerS: 300, badChecksumRate: 0.1 } });
    await waitFor(() => board(agent).source === 'bike', 'calibration table loaded through the noise', 15_000);
    await sleep(4000);
    const h = agent.health().protocol;
    expect(sim.counters.noiseBytes).toBeGreaterThan(500);
    expect(sim.counters.corrupted).toBeGreaterThan(5);
    expect(h.errors.stray).toBeGreaterThan(100);
    expect(h.errors.checksum + h.errors.framing + h.errors.digit + h.errors.length).toBeGreaterThan(5);
    const recent = records.slice(-20);
    for (const r of recent) {
      if (r.cadenceRpm !== null) expect(r.cadenceRpm).toBe(85);
      if (r.powerW !== null) expect(r.powerW).toBe(sim.wireValue(0x44) / 10);
    }
    expect(recent.filter((r) => r.powerW !== null).length).toBeGreaterThanOrEqual(18);
  });

  it("a calibration table that will not load: a clear error, retries, the default flagged on every record, and the bike's table once it answers", async () => {
    const table = DEFAULT_RESISTANCE_TABLE.map((v) => v + 20);
    const { board: sim, agent, records } = await bike({ table, faults: { refuseCalibration: true } });
    await waitFor(() => agent.recent.list().some((e) => /calibration table did not load/.test(e.msg)), 'the error', 10_000);
    const err = agent.recent.list().find((e) => /calibration table did not load/.test(e.msg))!;
    expect(err.level).toBe('error');
    expect(err.fields.err).toMatch(/entry 0 not answered after 3 attempts/);
    expect(sim.counters.calibrationRequests).toBeGreaterThanOrEqual(3);
    await waitFor(() => records.length > 10, 'records on the default table', 5000);
    expect(board(agent)).toMatchObject({ source: 'default', table: [...DEFAULT_RESISTANCE_TABLE] });
    expect(records.slice(-5).every((r) => flags(r) & RecordFlag.DEFAULT_CALIBRATION)).toBe(true);
    expect(agent.health().problems).toEqual([]);
    // Riding goes on, on the default table. Then the bike answers: its own table, the flag gone.
    sim.setFaults({ refuseCalibration: false });
    await waitFor(() => board(agent).source === 'bike', 'table loaded on a later attempt', 10_000);
    expect(board(agent).table).toEqual(table);
    const n = records.length;
    await waitFor(() => records.length > n + 5, 'more records', 5000);
    expect(records.slice(-3).every((r) => (flags(r) & RecordFlag.DEFAULT_CALIBRATION) === 0)).toBe(true);
    // The error was said once, not once per attempt.
    expect(agent.recent.list().filter((e) => /calibration table did not load/.test(e.msg))).toHaveLength(1);
  });
});
