// `run` says READY before the uploader connects (loading the MQTT client is the
// slowest part of a start): Agent.start({ deferUpload: true }) records and
// spools, shows the uploader idle, and connects it on startUploading().
import { afterEach, describe, expect, it } from 'vitest';
import { loadCalibration } from '../../src/metrics/calibration.js';
import { SimBoard } from '../../src/sim/board.js';
import { DEMO_RIDE } from '../../src/sim/ride-script.js';
import { SimRunner } from '../../src/sim/runner.js';
import { startAgent, tempDir } from '../helpers/agent.js';
import { Broker } from '../helpers/broker.js';
import { waitFor } from '../helpers/wait.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('the upload held until the agent has said READY', () => {
  it('records are spooled meanwhile; the uploader is idle, then connects and delivers them', async () => {
    const broker = await Broker.start();
    cleanups.push(() => broker.down());
    const sim = new SimRunner({ board: new SimBoard(loadCalibration('sim-bike-v1'), DEMO_RIDE) });
    const path = await sim.startOnPty(tempDir('held-pty-'));
    cleanups.push(() => sim.stop());
    const { agent } = startAgent(
      path,
      { mqtt: { enabled: true, url: broker.url, backoffBaseMs: 200, backoffCapMs: 1000 } },
      { deferUpload: true },
    );
    cleanups.push(() => agent.stop());

    await waitFor(() => {
      const s = agent.health().spool;
      return s.state === 'open' && s.records >= 20;
    }, 'records spooled');
    const held = agent.health();
    expect(held.upload).toMatchObject({ state: 'idle', url: broker.url, counters: { connects: 0, recordsAcked: 0 } });
    expect(held.problems).toEqual([]);

    agent.startUploading();
    await waitFor(() => {
      const u = agent.health().upload;
      return u.state === 'connected' && u.counters.recordsAcked >= 20;
    }, 'held records delivered');
    agent.startUploading(); // a second call changes nothing
    expect(agent.health().upload).toMatchObject({ state: 'connected', counters: { connects: 1 } });
  });
});
