import { describe, expect, it } from 'vitest';
import { RecordFlag } from '../../src/metrics/record.js';
import type { RideScript } from '../../src/sim/ride-script.js';
import { between, makePipeline } from '../helpers/ride.js';

const STEADY: RideScript = {
  name: 'steady-blocks',
  loop: false,
  segments: [
    { durationS: 20, cadenceRpm: 90, resistancePct: 40, hrBpm: 130 },
    { durationS: 5, cadenceRpm: [90, 70], resistancePct: [40, 60], hrBpm: 135 },
    { durationS: 20, cadenceRpm: 70, resistancePct: 60, hrBpm: 140 },
    { durationS: 5, cadenceRpm: [70, 110], resistancePct: [60, 30], hrBpm: 150 },
    { durationS: 20, cadenceRpm: 110, resistancePct: 30, hrBpm: 160 },
    { durationS: 20, cadenceRpm: 55, resistancePct: 85, hrBpm: 150 },
  ],
};

describe('metrics engine against a scripted simulated ride', () => {
  const p = makePipeline(STEADY);
  p.boot();
  p.ride(95);
  const blocks = [
    { from: 10, to: 20, cadence: 90, pct: 40 },
    { from: 35, to: 45, cadence: 70, pct: 60 },
    { from: 60, to: 70, cadence: 110, pct: 30 },
    { from: 80, to: 90, cadence: 55, pct: 85 },
  ];

  it('emits one record every 100 ms of board time with no gaps', () => {
    expect(p.records.length).toBe(950);
    for (let i = 1; i < p.records.length; i++) expect((p.records[i].tUs as number) - (p.records[i - 1].tUs as number)).toBe(100_000);
    expect(p.records.every((r) => ((r.flags as number) & RecordFlag.GAP_BEFORE) === 0)).toBe(true);
    expect(p.driver.counters.lostFrames).toBe(0);
  });

  for (const b of blocks) {
    it(`at steady state ${b.cadence} rpm / ${b.pct} %: cadence within 1 rpm, power within 2 % of the calibration model`, () => {
      const rows = between(p.records, b.from, b.to);
      expect(rows.length).toBe(100);
      const model = p.calibration.brakeWatts(b.cadence * p.calibration.gearRatio, b.pct);
      for (const r of rows) {
        expect(Math.abs((r.cadenceRpm as number) - b.cadence)).toBeLessThanOrEqual(1);
        expect(Math.abs((r.resistancePct as number) - b.pct)).toBeLessThan(0.5);
        expect(Math.abs((r.powerW as number) - model) / model).toBeLessThanOrEqual(0.02);
        expect(r.flywheelRpm as number).toBeCloseTo(b.cadence * p.calibration.gearRatio, 0);
      }
    });
  }

  it('passes heart rate through and integrates distance and energy from power', () => {
    const rows = between(p.records, 10, 20);
    expect(rows.every((r) => r.hrBpm === 130)).toBe(true);
    const last = p.records[p.records.length - 1];
    let energyJ = 0;
    for (const r of p.records) energyJ += (r.powerW as number) * 0.1;
    expect(last.energyKj as number).toBeCloseTo(energyJ / 1000, 0);
    expect(last.distanceM as number).toBeGreaterThan(0);
  });

  it('reports the inertial power of accelerating the flywheel during the ramp up', () => {
    // 70 -> 110 rpm in 5 s: the rider also spins the flywheel up, so power exceeds the brake alone.
    const r = between(p.records, 48, 49)[0];
    const brake = p.calibration.brakeWatts(r.flywheelRpm as number, r.resistancePct as number);
    expect(r.powerW as number).toBeGreaterThan(brake + 5);
  });
});

describe('counters and clocks that wrap', () => {
  it('rides through the 32-bit microsecond clock, 32-bit tick and 16-bit crank wraps without a glitch', () => {
    const p = makePipeline(
      { name: 'wrap', loop: true, segments: [{ durationS: 60, cadenceRpm: 90, resistancePct: 50, hrBpm: 120 }] },
      { clockStartUs: 2 ** 32 - 10_000_000, crankRevsStart: 65_520, flyTicksStart: 2 ** 32 - 1500 },
    );
    p.boot();
    p.ride(40);
    const model = p.calibration.brakeWatts(90 * p.calibration.gearRatio, 50);
    const rows = p.records.slice(30); // after the first crank events
    expect(rows.length).toBeGreaterThan(360);
    for (let i = 1; i < rows.length; i++) expect((rows[i].tUs as number) - (rows[i - 1].tUs as number)).toBe(100_000);
    for (const r of rows) {
      expect(Math.abs((r.cadenceRpm as number) - 90)).toBeLessThanOrEqual(1);
      expect(Math.abs((r.powerW as number) - model) / model).toBeLessThanOrEqual(0.02);
      expect(((r.flags as number) & RecordFlag.GAP_BEFORE) === 0).toBe(true);
    }
    expect(p.engine.counters.resets).toBe(0);
    expect(p.driver.clock.discontinuities).toBe(0);
  });
});

describe('stopping, stale and implausible values', () => {
  it('holds cadence for 3 s after the last crank event, then reports 0; flywheel speed and power decay to 0', () => {
    const p = makePipeline({ name: 'stop', loop: false, segments: [{ durationS: 10, cadenceRpm: 80, resistancePct: 40, hrBpm: 0 }] });
    p.boot();
    p.ride(16);
    const lastEvent = 10; // the script ends at 10 s; the last crank event is just before it
    expect(between(p.records, 9, 10).every((r) => Math.abs((r.cadenceRpm as number) - 80) <= 1)).toBe(true);
    expect(between(p.records, lastEvent + 3.1, 16).every((r) => r.cadenceRpm === 0)).toBe(true);
    expect(between(p.records, lastEvent + 2.1, 16).every((r) => r.flywheelRpm === 0 && r.powerW === 0)).toBe(true);
    // No heart-rate sensor: unknown, not zero.
    expect(p.records.every((r) => r.hrBpm === null)).toBe(true);
  });

  for (const pauseS of [5, 70]) {
    it(`after a ${pauseS} s standstill the first pedal stroke gives no cadence (no 60/${pauseS} rpm from the stroke before the pause); the second gives the true one`, () => {
      const p = makePipeline({
        name: 'pause',
        loop: false,
        segments: [
          { durationS: 10, cadenceRpm: 80, resistancePct: 40, hrBpm: 0 },
          { durationS: pauseS, cadenceRpm: 0, resistancePct: 40, hrBpm: 0 },
          { durationS: 10, cadenceRpm: 80, resistancePct: 40, hrBpm: 0 },
        ],
      });
      p.boot();
      p.ride(20 + pauseS);
      const resumeS = 10 + pauseS;
      // Zero through the pause and until the second stroke after it (0.75 s at 80 rpm); never a value in between.
      const after = between(p.records, 13.1, resumeS + 10);
      expect(after.filter((r) => (r.cadenceRpm as number) > 0 && Math.abs((r.cadenceRpm as number) - 80) > 1)).toEqual([]);
      expect(between(p.records, 13.1, resumeS + 0.7).every((r) => r.cadenceRpm === 0)).toBe(true);
      expect(between(p.records, resumeS + 1.6, resumeS + 10).every((r) => Math.abs((r.cadenceRpm as number) - 80) <= 1)).toBe(true);
    });
  }

  it('flags implausible cadence and heart rate and withholds the values', () => {
    const p = makePipeline({ name: 'x', loop: false, segments: [{ durationS: 1, cadenceRpm: 0, resistancePct: 0, hrBpm: 0 }] });
    const e = p.engine;
    let t = 1_000_000;
    // A crank revolution every 0.25 s is 240 rpm: above the 200 rpm limit.
    for (let i = 0; i < 20; i++, t += 20_000) {
      const revs = Math.floor(i / 12.5);
      e.pushCounters(t, t, 0, 0, revs, Math.floor((revs * 1024) / 4), 1000, 240, 0);
    }
    const flagged = p.records.filter((r) => (r.flags as number) & RecordFlag.CADENCE_IMPLAUSIBLE);
    expect(flagged.length).toBeGreaterThan(0);
    expect(flagged.every((r) => r.cadenceRpm === null)).toBe(true);
    expect(p.records.every((r) => (r.flags as number) & RecordFlag.HR_IMPLAUSIBLE && r.hrBpm === null)).toBe(true);
    expect(e.counters.implausibleCadence).toBeGreaterThan(0);
  });

  it('flags stale values from a board that reports values, then withdraws them', () => {
    const p = makePipeline({ name: 'x', loop: false, segments: [{ durationS: 1, cadenceRpm: 0, resistancePct: 0, hrBpm: 0 }] });
    const e = p.engine;
    // A values board that answers power for 2 s, then only cadence.
    for (let t = 0; t < 2_000_000; t += 100_000) e.pushValues(t, 80, 150, NaN, 40, NaN, 0);
    for (let t = 2_000_000; t < 8_000_000; t += 100_000) e.pushValues(t, 80, NaN, NaN, NaN, NaN, 0);
    const at = (s: number) => p.records.find((r) => r.tUs === s * 1e6)!;
    expect(at(1.5).powerW).toBe(150);
    expect((at(1.5).flags as number) & RecordFlag.POWER_STALE).toBe(0);
    expect(at(3.5).powerW).toBe(150);
    expect((at(3.5).flags as number) & RecordFlag.POWER_STALE).toBeTruthy();
    expect(at(7.5).powerW).toBeNull();
    expect((at(7.5).flags as number) & RecordFlag.POWER_STALE).toBeTruthy();
    expect(at(7.5).cadenceRpm).toBe(80);
    expect(at(7.5).flywheelRpm).toBeNull();
  });
});

describe('faults on the line and board resets', () => {
  it('counts dropped frames through sequence gaps exactly and corrupted frames as decode errors', () => {
    const p = makePipeline(
      { name: 'faulty', loop: true, segments: [{ durationS: 30, cadenceRpm: 85, resistancePct: 45, hrBpm: 120 }] },
      { faults: { dropRate: 0.03, badCrcRate: 0.02 }, seed: 7 },
    );
    p.boot();
    p.ride(60);
    const c = p.driver.counters;
    const errors = c.errors.reduce((a, b) => a + b, 0);
    expect(p.board.counters.framesDropped).toBeGreaterThan(20);
    expect(errors).toBe(p.board.counters.framesCorrupted);
    // A frame lost either way leaves a hole in the board's sequence numbers.
    expect(c.lostFrames).toBe(p.board.counters.framesDropped + p.board.counters.framesCorrupted);
    expect(c.frames).toBe(p.board.counters.framesSent - p.board.counters.framesCorrupted + 1 /* boot HELLO */);
    // The figures stay right despite the holes.
    const model = p.calibration.brakeWatts(85 * p.calibration.gearRatio, 45);
    for (const r of between(p.records, 10, 60)) {
      expect(Math.abs((r.cadenceRpm as number) - 85)).toBeLessThanOrEqual(1);
      expect(Math.abs((r.powerW as number) - model) / model).toBeLessThanOrEqual(0.02);
    }
  });

  it('a board reboot mid-ride restarts derived state without absurd values, and keeps the ride totals', async () => {
    const p = makePipeline({ name: 'reboot', loop: true, segments: [{ durationS: 60, cadenceRpm: 90, resistancePct: 50, hrBpm: 120 }] });
    p.boot();
    p.ride(10);
    const before = p.records.length;
    const energyBefore = p.records[before - 1].energyKj as number;
    const { RequestOp } = await import('../../src/protocol/fwp/codec.js');
    void p.driver.request(RequestOp.REBOOT, undefined, { timeoutMs: 1000, retries: 0 });
    p.ride(10);
    expect(p.driver.counters.boardResets).toBe(1);
    expect(p.engine.counters.resets).toBe(1);
    const after = p.records.slice(before);
    expect(after.filter((r) => (r.flags as number) & RecordFlag.GAP_BEFORE).length).toBe(1);
    for (const r of after) {
      expect(r.cadenceRpm === null || r.cadenceRpm <= 91).toBe(true);
      expect((r.powerW as number) < 1000).toBe(true);
    }
    for (let i = 1; i < p.records.length; i++) expect(p.records[i].tUs as number).toBeGreaterThan(p.records[i - 1].tUs as number);
    expect(p.records[p.records.length - 1].energyKj as number).toBeGreaterThan(energyBefore);
    expect(p.driver.counters.lostFrames).toBe(0);
  });
});
