import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { LiveRecord } from '../../src/metrics/record.js';
import { MemberPseudonymiser } from '../../src/rides/pseudonym.js';
import { RideTracker } from '../../src/rides/ride-tracker.js';
import type { RideSummary } from '../../src/contracts/health.js';

/** Drive a tracker with synthetic 10 Hz records: `fn(i)` gives record i's power, cadence and heart rate. */
function drive(
  tracker: RideTracker,
  from: number,
  count: number,
  fn: (i: number) => { p: number; c: number; h: number },
  totals = { d: 0, e: 0 },
) {
  const r = new LiveRecord();
  for (let i = from; i < from + count; i++) {
    const v = fn(i);
    r.tUs = i * 100_000;
    r.powerW = v.p;
    r.cadenceRpm = v.c;
    r.hrBpm = v.h;
    totals.d += v.c > 0 ? 1 : 0;
    totals.e += v.p === v.p ? (v.p * 0.1) / 1000 : 0;
    r.distanceM = totals.d;
    r.energyKj = totals.e;
    tracker.onRecord(r);
    tracker.noteSeq(i + 1);
  }
  return totals;
}

function tracker(opts: Partial<ConstructorParameters<typeof RideTracker>[0]> = {}) {
  const started: RideSummary[] = [];
  const ended: RideSummary[] = [];
  let resets = 0;
  const t = new RideTracker({
    idleEndMs: 30_000,
    autoStart: true,
    store: null,
    resetTotals: () => resets++,
    onStarted: (s) => started.push(s),
    onEnded: (s) => ended.push(s),
    log: createLogger('silent'),
    ...opts,
  });
  return { t, started, ended, resets: () => resets };
}

describe('ride tracker', () => {
  it('starts a ride when pedalling begins and ends it after the idle time, trimming the idle tail', () => {
    const { t, started, ended, resets } = tracker();
    // 10 s standing still, 10 minutes riding at 200 W / 90 rpm / 140 bpm, then 40 s idle.
    drive(t, 0, 100, () => ({ p: 0, c: 0, h: 70 }));
    expect(t.isActive).toBe(false);
    const totals = drive(t, 100, 6000, () => ({ p: 200, c: 90, h: 140 }));
    expect(started).toHaveLength(1);
    expect(resets()).toBe(1);
    drive(t, 6100, 400, () => ({ p: 0, c: 0, h: 100 }), totals);
    expect(ended).toHaveLength(1);
    const s = ended[0];
    expect(s.endReason).toBe('idle');
    expect(s.startedBy).toBe('auto');
    expect(s.member).toBeNull();
    // Trimmed to the last pedal stroke: 6000 records = 600.0 s, not the 30 s idle tail.
    expect(s.durationS).toBeCloseTo(600, 1);
    expect(s.records).toBe(6000);
    expect(s.avgPowerW).toBe(200);
    expect(s.maxPowerW).toBe(200);
    expect(s.avgCadenceRpm).toBe(90);
    expect(s.avgHrBpm).toBe(140);
    expect(s.best1minW).toBe(200);
    expect(s.best5minW).toBe(200);
    expect(s.firstSeq).toBe(101);
    expect(s.lastSeq).toBe(6100);
    expect(t.isActive).toBe(false);
  });

  it('best 1-minute and 5-minute power are the best rolling averages; null for a shorter ride', () => {
    const { t, ended } = tracker();
    // 4 min at 150 W with one 1-minute effort of 400 W starting at minute 2; then 3 min at 250 W.
    drive(t, 0, 2400, (i) => ({ p: i >= 1200 && i < 1800 ? 400 : 150, c: 80, h: 0 }));
    drive(t, 2400, 1800, () => ({ p: 250, c: 85, h: 0 }));
    const s = t.end('api')!;
    expect(ended).toEqual([s]);
    expect(s.best1minW).toBe(400);
    // Best 5 minutes: the window 1200..4200 holds 600 x 400 + 600 x 150 + 1800 x 250 = 260 W average.
    expect(s.best5minW).toBe(260);
    expect(s.maxPowerW).toBe(400);
    expect(s.avgHrBpm).toBeNull();
    expect(s.maxHrBpm).toBeNull();

    const short = tracker();
    drive(short.t, 0, 500, () => ({ p: 180, c: 80, h: 120 }));
    const ss = short.t.end()!;
    expect(ss.best1minW).toBeNull();
    expect(ss.best5minW).toBeNull();
    expect(ss.durationS).toBeCloseTo(50, 1);
  });

  it('unknown values (NaN) are left out of averages, never counted as zero', () => {
    const { t } = tracker();
    drive(t, 0, 200, (i) => ({ p: i % 2 ? Number.NaN : 100, c: 80, h: i % 2 ? Number.NaN : 150 }));
    const s = t.current()!;
    expect(s.avgPowerW).toBe(100);
    expect(s.avgHrBpm).toBe(150);
  });

  it('an app-started ride ends the auto ride in progress, and no auto ride starts again until pedalling pauses', () => {
    const { t, ended, started } = tracker();
    drive(t, 0, 100, () => ({ p: 100, c: 70, h: 0 }));
    const { started: s, ended: replaced } = t.start('m1.AAAAAAAAAAAAAAAAAAAAAA', 'class-7');
    expect(replaced?.endReason).toBe('replaced');
    expect(s.member).toBe('m1.AAAAAAAAAAAAAAAAAAAAAA');
    expect(s.classId).toBe('class-7');
    expect(s.startedBy).toBe('api');
    drive(t, 100, 100, () => ({ p: 100, c: 70, h: 0 }));
    t.end('api');
    expect(ended.map((e) => e.endReason)).toEqual(['replaced', 'api']);
    // Still pedalling after the app ended the ride: no new ride yet.
    drive(t, 200, 50, () => ({ p: 100, c: 70, h: 0 }));
    expect(t.isActive).toBe(false);
    drive(t, 250, 10, () => ({ p: 0, c: 0, h: 0 }));
    drive(t, 260, 10, () => ({ p: 100, c: 70, h: 0 }));
    expect(t.isActive).toBe(true);
    expect(started).toHaveLength(3);
  });

  it('an app-started ride where nobody pedals ends after the idle time', () => {
    const { t, ended } = tracker({ autoStart: false });
    t.start(null, null);
    drive(t, 0, 320, () => ({ p: 0, c: 0, h: 0 }));
    expect(ended).toHaveLength(1);
    expect(ended[0].endReason).toBe('idle');
  });
});

describe('member pseudonyms', () => {
  it('are keyed hashes: stable for one key, different under another, not the id, recognisable', () => {
    const a = new MemberPseudonymiser(Buffer.alloc(32, 1));
    const b = new MemberPseudonymiser(Buffer.alloc(32, 2));
    const p = a.pseudonym('alice@example.com');
    expect(p).toMatch(/^m1\.[A-Za-z0-9_-]{22}$/);
    expect(a.pseudonym('alice@example.com')).toBe(p);
    expect(b.pseudonym('alice@example.com')).not.toBe(p);
    expect(a.pseudonym('bob@example.com')).not.toBe(p);
    expect(p).not.toContain('alice');
    expect(MemberPseudonymiser.isPseudonym(p)).toBe(true);
    expect(MemberPseudonymiser.isPseudonym('alice@example.com')).toBe(false);
    expect(() => new MemberPseudonymiser(Buffer.alloc(16))).toThrow(/at least 32 bytes/);
  });
});
