/**
 * Wall-clock placement (packet.cddl clock entries): one filtered offset,
 * never backwards between records, steps taken at once. Through the real
 * spool on a real file, with an injected clock and seeded latency.
 */
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { LiveRecord } from '../../src/metrics/record.js';
import { seededRandom } from '../../src/sim/rng.js';
import { ROW_COLUMNS } from '../../src/spool/columns.js';
import { Spool } from '../../src/spool/spool.js';
import { SLEW_DOWN_MS, WallClockMap } from '../../src/spool/wall-clock.js';
import { buildPacket } from '../../src/upload/packet.js';
import { tempDir } from '../helpers/agent.js';

const WALL = ROW_COLUMNS.indexOf('wall_ms');

/** A spool on a real file whose wall clock is `clock()`. */
function spoolOnClock(clock: () => number): Spool {
  return Spool.open({
    dir: tempDir('wall-'),
    deviceId: 'b',
    maxBytes: 1 << 28,
    synchronous: 'NORMAL',
    memoryRecords: 36_000,
    log: createLogger('silent'),
    now: clock,
  });
}

describe('wall-clock mapping', () => {
  it('10 minutes of records with 0-150 ms of seeded latency, a slow board crystal and one NTP step: wall time never goes back, offsets settle, the step shows once', () => {
    let now = 1_795_000_000_000;
    const spool = spoolOnClock(() => now);
    const rand = seededRandom(7);
    const r = new LiveRecord();
    const trueOffset = (tUs: number) => 5_000 + tUs / 1000 / 20_000; // the board clock 50 ppm slow
    let step = 0;
    for (let i = 1; i <= 6000; i++) {
      r.tUs = i * 100_000;
      if (i === 3000) step = 30_000; // NTP steps the wall clock 30 s forward
      // The record is made after its instant: the wall clock reads its true time plus 0-150 ms.
      now = Math.round(r.tUs / 1000 + trueOffset(r.tUs) + step + rand() * 150);
      spool.append(r, 0);
      if (i % 10 === 0) spool.flush();
    }
    const rows = spool.read(0, 10_000);
    spool.close();
    expect(rows.length).toBe(6000);
    for (let i = 1; i < rows.length; i++) expect(rows[i][WALL], `record ${i}`).toBeGreaterThan(rows[i - 1][WALL]);
    // Within the offset the truth allows: never before the true time, and close to it after the first seconds.
    const offsets = rows.map((x, i) => x[WALL] - (i + 1) * 100);
    // The step is seen at the next commit (once a second): from record 3001 on.
    const truth = (i: number) => trueOffset((i + 1) * 100_000) + (i + 1 > 3000 ? 30_000 : 0);
    for (let i = 0; i < 6000; i++) {
      // Never placed before its true time (a measurement is the truth plus latency; the filter only comes down to the least).
      expect(offsets[i] - truth(i), `record ${i}`).toBeGreaterThan(-1);
      // Within 40 ms of it once settled: 10 s after the start and after the step.
      if ((i >= 100 && i < 3000) || i >= 3100) expect(offsets[i] - truth(i), `record ${i}`).toBeLessThan(40);
    }
    // Packets of 300 records: at most a handful of clock entries each, and the step exactly where it happened.
    let entries = 0;
    for (let p = 0; p < 20; p++) {
      const pkt = buildPacket({ deviceId: 'b', ride: null, rows: rows.slice(p * 300, p * 300 + 300), gaps: [], deflate: false });
      entries += pkt.clock.length;
    }
    expect(entries).toBeLessThan(60);
    // A packet holding the step says where it is: a clock entry at record 3001 (index 100 of records 2901-3200).
    const stepPkt = buildPacket({ deviceId: 'b', ride: null, rows: rows.slice(2900, 3200), gaps: [], deflate: false });
    expect(stepPkt.clock.some(([idx, off]) => idx === 100 && off - stepPkt.clock[0][1] > 29_000)).toBe(true);
  });

  it('the filter: follows the smallest latency slowly down, drift slowly up, steps at once', () => {
    const m = new WallClockMap();
    expect(m.measure(10_150, 0)).toBe(10_150);
    expect(m.measure(11_100, 1_000_000)).toBe(10_150 - SLEW_DOWN_MS);
    expect(m.measure(12_500, 2_000_000)).toBeCloseTo(10_130.2, 5);
    expect(m.measure(50_000, 3_000_000)).toBe(47_000);
    expect(m.measure(3_000, 4_000_000)).toBe(-1_000);
  });

  it('records held before the spool opened: the spool continues their mapping, so wall time does not step back after them', () => {
    // The held records were placed 95 ms late (the agent read the clock up to 100 ms after the newest of them).
    const heldOffset = 5_095;
    const lastHeldWall = 10_000_000 / 1000 + heldOffset;
    let now = 0;
    const spool = spoolOnClock(() => now);
    spool.continueWallClock(heldOffset, 10_000_000);
    // A commit before any new record (the held ones are written first): measured against the newest held record.
    now = 10_000 + 5_000 + 30;
    spool.flush();
    const r = new LiveRecord();
    for (let i = 1; i <= 100; i++) {
      r.tUs = 10_000_000 + i * 100_000;
      now = r.tUs / 1000 + 5_000; // the truth, read at once: 95 ms below the held mapping
      spool.append(r, 0);
      if (i % 10 === 0) spool.flush();
    }
    const rows = spool.read(0, 1_000);
    spool.close();
    // The first new record: the held mapping, come down one slew step at that commit.
    expect(rows[0][WALL]).toBe(10_100 + heldOffset - SLEW_DOWN_MS);
    expect(rows[0][WALL]).toBeGreaterThan(lastHeldWall);
    for (let i = 1; i < rows.length; i++) expect(rows[i][WALL], `record ${i}`).toBeGreaterThan(rows[i - 1][WALL]);
    // Down to the truth at SLEW_DOWN_MS a commit, never in one step.
    const offsets = rows.map((x, i) => x[WALL] - 10_000 - (i + 1) * 100);
    for (let i = 1; i < offsets.length; i++) expect(offsets[i - 1] - offsets[i]).toBeLessThanOrEqual(SLEW_DOWN_MS);
    expect(offsets[offsets.length - 1]).toBe(5_000);
  });
});
