/**
 * The serial link, driver and engine on real pseudo-terminals (socat pty
 * pairs) through serialport: no mocks between the bytes and the records.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SerialPort } from 'serialport';
import { afterEach, describe, expect, it } from 'vitest';
import { loadCalibration } from '../../src/metrics/calibration.js';
import { RecordFlag } from '../../src/metrics/record.js';
import { FwpFrame, FwpResult, MAX_WIRE_FRAME, decodeFrame } from '../../src/protocol/fwp/codec.js';
import { SimBoard } from '../../src/sim/board.js';
import { PtyPair } from '../../src/sim/pty.js';
import type { RideScript } from '../../src/sim/ride-script.js';
import { seededRandom } from '../../src/sim/rng.js';
import { SimRunner } from '../../src/sim/runner.js';
import { startAgent, tempDir } from '../helpers/agent.js';
import { waitFor } from '../helpers/wait.js';

const STEADY: RideScript = { name: 'steady', loop: true, segments: [{ durationS: 600, cadenceRpm: 90, resistancePct: 45, hrBpm: 140 }] };
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A pty pair with the board's end opened by the test, which writes the board's bytes itself. */
async function boardSide(prefix: string): Promise<{ pty: PtyPair; board: SerialPort }> {
  const dir = tempDir(prefix);
  const pty = new PtyPair(join(dir, 'board'), join(dir, 'console'));
  await pty.open();
  cleanups.push(() => pty.close());
  const board = new SerialPort({ path: pty.boardPath, baudRate: 115200, autoOpen: false });
  await new Promise<void>((res, rej) => board.open((e) => (e ? rej(e) : res())));
  cleanups.push(() => new Promise<void>((res) => (board.isOpen ? board.close(() => res()) : res())));
  return { pty, board };
}

describe('serial link on a real pty pair', () => {
  it('socat is installed (the serial tests need it; .ci/run installs it)', () => {
    expect(PtyPair.socatAvailable()).toBe(true);
  });

  it('reads a simulated board: hello answered over the wire, records flowing, counters clean', async () => {
    const cal = loadCalibration('sim-bike-v1');
    const sim = new SimRunner({ board: new SimBoard(cal, STEADY) });
    const path = await sim.startOnPty(tempDir('pty-'));
    cleanups.push(() => sim.stop());
    const { agent, records, states } = startAgent(path);
    cleanups.push(() => agent.stop());

    await waitFor(() => agent.firmware.driver.hello !== null, 'board hello');
    expect(agent.firmware.driver.hello?.serial).toBe(Buffer.from('SIMBIKE00001').toString('hex'));
    expect(agent.firmware.driver.hello?.ticksPerRev).toBe(cal.ticksPerRev);
    await waitFor(() => records.length >= 30, '3 s of records');
    const h = agent.health();
    expect(states.slice(0, 2)).toEqual(['opening', 'open']);
    expect(h.link.state).toBe('open');
    expect(h.protocol.samples).toBeGreaterThan(140);
    expect(Object.values(h.protocol.errors).every((n) => n === 0)).toBe(true);
    expect(h.protocol.lostFrames).toBe(0);
    expect(h.link.counters.oversized).toBe(0);
    expect(h.link.counters.bytesIn).toBeGreaterThan(h.protocol.samples * 20);
    // Steady ride: after the first crank revolutions the figures match the script.
    const model = cal.brakeWatts(90 * cal.gearRatio, 45);
    for (const r of records.slice(20)) {
      expect(Math.abs((r.cadenceRpm as number) - 90)).toBeLessThanOrEqual(1);
      expect(Math.abs((r.powerW as number) - model) / model).toBeLessThanOrEqual(0.02);
      expect(r.hrBpm).toBe(140);
    }
  });

  it('requests over the wire: SET_SAMPLE_RATE changes the stream, a bad argument is refused, and a mute board times out after the retries', async () => {
    const { RequestOp, ResponseStatus } = await import('../../src/protocol/fwp/codec.js');
    const cal = loadCalibration('sim-bike-v1');
    const sim = new SimRunner({ board: new SimBoard(cal, STEADY) });
    const path = await sim.startOnPty(tempDir('pty-req-'));
    cleanups.push(() => sim.stop());
    const { agent } = startAgent(path);
    cleanups.push(() => agent.stop());
    await waitFor(() => agent.firmware.driver.hello !== null, 'board hello');
    const opts = { timeoutMs: 500, retries: 2 };

    const data = await agent.firmware.driver.request(RequestOp.SET_SAMPLE_RATE, 100, opts);
    expect(data.readUInt16LE(0)).toBe(100);
    const s0 = agent.firmware.driver.counters.samples;
    await sleep(2000);
    const perS = (agent.firmware.driver.counters.samples - s0) / 2;
    expect(perS).toBeGreaterThan(85);
    expect(perS).toBeLessThan(115);

    await expect(agent.firmware.driver.request(RequestOp.SET_SAMPLE_RATE, 1000, opts)).rejects.toMatchObject({
      name: 'RequestError',
      status: ResponseStatus.BAD_ARGUMENT,
      message: expect.stringMatching(/refused SET_SAMPLE_RATE: BAD_ARGUMENT/),
    });
    await expect(agent.firmware.driver.request(0x7e, undefined, opts)).rejects.toMatchObject({ status: ResponseStatus.UNKNOWN_OP });

    // A board that receives nothing: unplug the console's requests by stopping the responder.
    sim.board.receive = () => [];
    const sent = agent.firmware.driver.counters.requestsSent;
    const t0 = Date.now();
    await expect(agent.firmware.driver.request(RequestOp.GET_HELLO, undefined, opts)).rejects.toThrow(
      /GET_HELLO: no response after 3 attempts/,
    );
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
    expect(agent.firmware.driver.counters.requestsSent - sent).toBe(3);
    expect(agent.firmware.driver.counters.requestTimeouts).toBeGreaterThanOrEqual(3);
    expect(agent.link.state).toBe('open'); // samples keep flowing: a mute request path is not a dead link
  });

  it('a missing device at start is not fatal: the link waits, then opens when the board appears', async () => {
    const dir = tempDir('pty-late-');
    const { agent, records, states } = startAgent(join(dir, 'console'));
    cleanups.push(() => agent.stop());
    await waitFor(() => states.includes('waiting'), 'link waiting');
    expect(agent.link.snapshot().lastError).toMatch(/console/);
    await sleep(300);
    const sim = new SimRunner({ board: new SimBoard(loadCalibration('sim-bike-v1'), STEADY) });
    await sim.startOnPty(dir);
    cleanups.push(() => sim.stop());
    await waitFor(() => records.length >= 5, 'records after the board appeared');
    expect(agent.link.state).toBe('open');
    expect(agent.link.counters.openFailures).toBeGreaterThanOrEqual(1);
  });

  it('survives unplug and replug mid-ride: reopens with a fresh port, records resume, the outage is marked', async () => {
    const cal = loadCalibration('sim-bike-v1');
    const sim = new SimRunner({ board: new SimBoard(cal, STEADY) });
    const path = await sim.startOnPty(tempDir('pty-unplug-'));
    cleanups.push(() => sim.stop());
    const { agent, records, states } = startAgent(path);
    cleanups.push(() => agent.stop());
    await waitFor(() => records.length >= 20, 'records before unplug');

    await sim.unplug();
    await waitFor(() => agent.link.state === 'waiting', 'link noticing the unplug');
    const beforeReplug = records.length;
    await sleep(1500);
    expect(records.length).toBe(beforeReplug); // nothing invented while unplugged
    expect(['waiting', 'opening']).toContain(agent.link.state);
    await sim.replug();
    await waitFor(() => records.length >= beforeReplug + 20, 'records after replug');

    const c = agent.link.counters;
    expect(c.disconnects).toBe(1);
    expect(c.opens).toBe(2);
    expect(states.filter((s) => s === 'open').length).toBe(2);
    const after = records.slice(beforeReplug);
    expect((after[0].flags as number) & RecordFlag.GAP_BEFORE).toBeTruthy();
    // The board kept running while unplugged: its frames were lost on the wire, not reordered.
    expect(sim.framesWhileUnplugged).toBeGreaterThan(50);
    for (let i = 1; i < records.length; i++) expect(records[i].tUs as number).toBeGreaterThan(records[i - 1].tUs as number);
    expect(Object.values(agent.health().protocol.errors).every((n) => n === 0)).toBe(true);
    const model = cal.brakeWatts(90 * cal.gearRatio, 45);
    for (const r of after.slice(12)) {
      expect(Math.abs((r.cadenceRpm as number) - 90)).toBeLessThanOrEqual(1);
      expect(Math.abs((r.powerW as number) - model) / model).toBeLessThanOrEqual(0.02);
    }
  });

  // A timeout of three beats or more rides on the agent's heartbeat (as installed: 3000 ms, 1 s beats); a shorter one has a timer of its own.
  it.each([
    ['its own timer', {}],
    ["the agent's heartbeat", { spool: { flushIntervalMs: 250 } }],
  ])(
    'a board that goes silent without an error (cable pulled, adapter still plugged) is reopened by the watchdog (%s)',
    async (_how, overrides) => {
      const { pty, board } = await boardSide('pty-silent-');
      const frames = new SimBoard(loadCalibration('sim-bike-v1'), STEADY).generateSamples(20);
      const { agent, states } = startAgent(pty.consolePath, overrides);
      cleanups.push(() => agent.stop());
      await waitFor(() => agent.link.state === 'open', 'link open');
      board.write(frames.bytes);
      await waitFor(() => agent.firmware.driver.counters.samples === 20, 'samples');
      // Now nothing: no bytes, no error.
      await waitFor(() => agent.link.counters.silenceTimeouts === 1, 'silence watchdog', 5000);
      expect(agent.link.snapshot().lastError).toBe('no data for 1000 ms');
      await waitFor(() => agent.link.counters.opens === 2, 'reopened');
      expect(states).toContain('waiting');
      expect(agent.link.counters.disconnects).toBe(0);
    },
  );

  it('1 MB of random bytes between valid frames: no crash, resync on the next valid frame, counters exact', async () => {
    const { pty, board } = await boardSide('pty-noise-');

    // Valid frames: 3000 consecutive SAMPLEs (one minute of riding at 50 Hz).
    const sim = new SimBoard(loadCalibration('sim-bike-v1'), STEADY, { seed: 5 });
    const valid = sim.generateSamples(3000);
    // Noise: 1 MiB in chunks after each frame, each ending in a delimiter so the next frame starts clean.
    const rand = seededRandom(99);
    const total = 1 << 20;
    const noise: Buffer[] = [];
    let left = total;
    for (let i = 0; i < 3000; i++) {
      const n = i === 2999 ? left : Math.min(left, Math.floor(rand() * 2 * (total / 3000)));
      const b = Buffer.alloc(n + 1);
      for (let k = 0; k < n; k++) b[k] = Math.floor(rand() * 256);
      b[n] = 0;
      noise.push(b);
      left -= n;
    }
    expect(left).toBe(0);

    // The oracle: what a correct receiver must count, piece by piece.
    const expected = { frames: 3000, oversized: 0, errors: new Map<number, number>() };
    const f = new FwpFrame();
    for (const chunk of noise) {
      let start = 0;
      for (let i = 0; i < chunk.length; i++) {
        if (chunk[i] !== 0) continue;
        const len = i - start;
        if (len > MAX_WIRE_FRAME - 1) expected.oversized++;
        else {
          const r = decodeFrame(chunk, start, i, f);
          if (r === FwpResult.OK) expected.frames++;
          else if (r !== FwpResult.EMPTY) expected.errors.set(r, (expected.errors.get(r) ?? 0) + 1);
        }
        start = i + 1;
      }
    }
    expect(expected.frames).toBe(3000); // with this seed, no noise piece happens to be a valid frame
    expect(expected.oversized).toBeGreaterThan(100);

    const { agent, records } = startAgent(pty.consolePath);
    cleanups.push(() => agent.stop());
    await waitFor(() => agent.link.state === 'open', 'link open');
    let totalBytes = 0;
    for (let i = 0; i < 3000; i++) {
      const frame = valid.bytes.subarray(valid.starts[i], valid.ends[i] + 1);
      board.write(frame);
      board.write(noise[i]);
      totalBytes += frame.length + noise[i].length;
    }
    await new Promise<void>((res) => board.drain(() => res()));
    await waitFor(() => agent.link.counters.bytesIn >= totalBytes, 'every byte through the pty', 30_000);

    const h = agent.health();
    expect(h.link.counters.bytesIn).toBe(totalBytes);
    expect(h.protocol.samples).toBe(3000);
    expect(h.protocol.frames).toBe(expected.frames);
    expect(h.link.counters.oversized).toBe(expected.oversized);
    for (const [code, n] of expected.errors) expect(agent.firmware.driver.counters.errors[code], `error code ${code}`).toBe(n);
    expect(agent.firmware.driver.counters.errors.reduce((a, b) => a + b, 0)).toBe([...expected.errors.values()].reduce((a, b) => a + b, 0));
    expect(h.protocol.lostFrames).toBe(0);
    // Every valid frame reached the engine: one minute of records.
    expect(records.length).toBeGreaterThanOrEqual(599);
    expect(records.length).toBeLessThanOrEqual(600);
  });

  it('read on the heartbeat while nobody watches the live figures: the same records in one burst a beat; at its own pace while watched or waiting for a reply', async () => {
    const { RequestOp } = await import('../../src/protocol/fwp/codec.js');
    const cal = loadCalibration('sim-bike-v1');
    const sim = new SimRunner({ board: new SimBoard(cal, STEADY) });
    const path = await sim.startOnPty(tempDir('pty-beat-'));
    cleanups.push(() => sim.stop());
    // The installed silence timeout (3 s: three beats), so the silence check rides on the heartbeat too.
    const { agent } = startAgent(path, {
      serial: { path, reopenBaseMs: 50, reopenCapMs: 200, silenceTimeoutMs: 3000, requestTimeoutMs: 300, requestRetries: 2 },
    });
    cleanups.push(() => agent.stop());
    const arrivals: number[] = [];
    agent.addRecordSink(() => arrivals.push(performance.now()));
    /** Records and the bursts they came in (a pause of over 50 ms between two records starts a burst) over `ms`. */
    const watch = async (ms: number) => {
      const from = arrivals.length;
      await sleep(ms);
      const got = arrivals.slice(from);
      const bursts = got.filter((t, i) => i === 0 || t - got[i - 1] > 50).length;
      return { records: got.length, bursts };
    };
    await waitFor(() => agent.firmware.driver.hello !== null, 'board hello');
    // The hello was a request: its reply window (2 s) passes, then the next beat reads on the beat.
    await waitFor(() => agent.link.readingOnBeat, 'reading on the beat', 5000);
    const unwatched = await watch(4000);
    expect(unwatched.records).toBeGreaterThanOrEqual(30); // 10 Hz, nothing lost or held back
    expect(unwatched.bursts).toBeLessThanOrEqual(5); // one a beat
    expect(agent.health().link.counters.opens).toBe(1); // the beats between reads are not silence
    expect(agent.health().link.reads).toBe('heartbeat'); // what status shows a technician

    agent.link.setUnwatched(false); // a live subscriber (the hub calls this)
    expect(agent.link.readingOnBeat).toBe(false);
    expect(agent.health().link.reads).toBe('paced');
    const watched = await watch(3000);
    expect(watched.records).toBeGreaterThanOrEqual(25);
    expect(watched.bursts).toBeGreaterThanOrEqual(15); // every readCoalesceMs (100 ms)

    agent.link.setUnwatched(true);
    await waitFor(() => agent.link.readingOnBeat, 'reading on the beat again', 3000);
    // A request: its reply is read as it comes, and the link goes back to the beat once the window has passed.
    const reply = agent.firmware.driver.request(RequestOp.SET_SAMPLE_RATE, 50, { timeoutMs: 300, retries: 0 });
    expect(agent.link.readingOnBeat).toBe(false);
    await reply;
    await waitFor(() => agent.link.readingOnBeat, 'back on the beat after the reply window', 5000);
  });
});
