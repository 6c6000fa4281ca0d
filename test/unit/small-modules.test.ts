/**
 * The small modules on their own, with injected clocks and seeded randomness
 * (no timers, no ports): backoff, token bucket, board clock, sequence
 * reservation, frame splitter, protocol detection, zod messages, the error
 * type, and the recent-log fields the API shows.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { num } from '../../src/cli/format.js';
import { ConfigError } from '../../src/config/errors.js';
import { Backoff } from '../../src/link/backoff.js';
import { RecentLog } from '../../src/log/recent.js';
import { BoardClock } from '../../src/protocol/fwp/board-clock.js';
import { encodeRequest, PelotonCmd, REQ_READ, encodeReply, REPLY_DIGITS } from '../../src/protocol/peloton/codec.js';
import { detectProtocol } from '../../src/protocol/registry.js';
import { seededRandom } from '../../src/sim/rng.js';
import { SequenceAllocator } from '../../src/spool/sequence.js';
import { TokenBucket } from '../../src/upload/token-bucket.js';
import { AgentError } from '../../src/util/errors.js';
import { issuesText } from '../../src/util/zod-issues.js';
import { tempDir } from '../helpers/agent.js';

describe('Backoff: exponential with full jitter', () => {
  it('draws each delay below a ceiling that doubles up to the cap, never below the floor', () => {
    const random = seededRandom(7);
    const b = new Backoff(100, 1600, 10, random);
    const delays = Array.from({ length: 8 }, () => b.next());
    const ceilings = [100, 200, 400, 800, 1600, 1600, 1600, 1600];
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(10);
      expect(d).toBeLessThan(ceilings[i]);
    });
    expect(b.attempts).toBe(8);
    b.reset();
    expect(b.attempts).toBe(0);
  });

  it('full jitter: the extremes of the random draw give 0 (raised to the floor) and just under the ceiling', () => {
    expect(new Backoff(100, 1000, 0, () => 0).next()).toBe(0);
    expect(new Backoff(100, 1000, 25, () => 0).next()).toBe(25);
    expect(new Backoff(100, 1000, 0, () => 0.999999).next()).toBe(99);
  });

  it('a server-set base raises the cap with it; nonsense is refused', () => {
    const b = new Backoff(100, 200, 0, () => 0.999999);
    b.setBase(5000);
    expect(b.base).toBe(5000);
    expect(b.next()).toBe(4999);
    expect(() => b.setBase(0)).toThrow(RangeError);
    expect(() => new Backoff(0, 10)).toThrow(RangeError);
    expect(() => new Backoff(100, 10)).toThrow(RangeError);
  });

  it('spreads a fleet: 1,000 seeded bikes reconnecting at once land across the whole first window', () => {
    const firsts = Array.from({ length: 1000 }, (_, i) => new Backoff(1000, 120_000, 0, seededRandom(i + 1)).next());
    const perTenth = new Array<number>(10).fill(0);
    for (const d of firsts) perTenth[Math.floor(d / 100)]++;
    // Uniform over [0, 1000): every 100 ms slot holds roughly a tenth of the fleet, none a pile-up.
    for (const n of perTenth) expect(n).toBeGreaterThan(60);
    for (const n of perTenth) expect(n).toBeLessThan(140);
  });
});

describe('TokenBucket on an injected clock', () => {
  it('starts full (one second of rate), refills with time, and says how long to wait', () => {
    let t = 0;
    const b = new TokenBucket(1000, () => t);
    expect(b.take(800)).toBe(0);
    expect(b.wait(500)).toBe(300); // 200 in hand, 300 more at 1 byte/ms
    expect(b.take(500)).toBe(300); // nothing taken
    t += 300;
    expect(b.take(500)).toBe(0);
    expect(b.wait(1)).toBe(1);
  });

  it('an oversized packet goes when the bucket is full and its debt is paid before the next', () => {
    let t = 0;
    const b = new TokenBucket(100, () => t);
    expect(b.take(250)).toBe(0); // 100 in hand: goes, 150 owed
    expect(b.take(10)).toBe(1600); // the debt (150) and the 10 at 100 B/s
    t += 1600;
    expect(b.take(10)).toBe(0);
  });

  it('rate 0 is unlimited; a new rate keeps the tokens in hand up to the new burst', () => {
    let t = 0;
    const b = new TokenBucket(0, () => t);
    expect(b.take(1e9)).toBe(0);
    b.setRate(500);
    expect(b.bytesPerSecond).toBe(500);
    expect(b.take(1)).toBe(2); // from an empty bucket: 1 byte at 500 B/s
    t += 10_000;
    b.setRate(50);
    expect(b.take(50)).toBe(0);
    expect(b.take(1)).toBeGreaterThan(0);
  });
});

describe('BoardClock: the board’s 32-bit µs clock unwrapped', () => {
  const at = (tUs: number) => ({ tUs });

  it('runs through the 2^32 wrap without a jump', () => {
    const c = new BoardClock(1_000_000);
    let t = 2 ** 32 - 50_000;
    expect(c.advanceTo(at(t), 20_000)).toBe(false);
    const start = c.nowUs;
    for (let i = 0; i < 10; i++) {
      t = (t + 20_000) % 2 ** 32;
      expect(c.advanceTo(at(t), 20_000)).toBe(false);
    }
    expect(c.nowUs - start).toBe(200_000);
    expect(c.discontinuities).toBe(0);
  });

  it('a step over the limit (a lost stretch or a clock jump) is one nominal step and counted', () => {
    const c = new BoardClock(1_000_000);
    c.advanceTo(at(1_000), 20_000);
    expect(c.advanceTo(at(5_000_000), 20_000)).toBe(true);
    expect(c.nowUs).toBe(21_000);
    expect(c.discontinuities).toBe(1);
  });

  it('after a board reboot, time goes on from where it was (engine time never goes back)', () => {
    const c = new BoardClock(1_000_000);
    c.advanceTo(at(9_000_000), 20_000);
    c.advanceTo(at(9_020_000), 20_000);
    c.reanchor();
    expect(c.advanceTo(at(100), 20_000)).toBe(true);
    expect(c.nowUs).toBe(9_040_000);
    c.advanceTo(at(20_100), 20_000);
    expect(c.nowUs).toBe(9_060_000);
  });
});

describe('SequenceAllocator: numbers that never repeat', () => {
  it('reserves a block on disk before handing out its numbers, and starts after the reservation next time', () => {
    const dir = tempDir('seq-');
    const file = join(dir, 'sequence.json');
    const a = new SequenceAllocator(file, 1, 10);
    expect([a.take(), a.take(), a.take()]).toEqual([1, 2, 3]);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ reservedEnd: 11 });
    // A crash now: the next run starts above everything that may have been handed out.
    const b = new SequenceAllocator(file, 2, 10);
    expect(b.take()).toBe(11);
    // The spool's own floor wins when it is higher (the file was lost or is old).
    const c = new SequenceAllocator(join(dir, 'other.json'), 500, 10);
    expect(c.take()).toBe(500);
  });

  it('a reservation that cannot be written: numbering goes on, the error is said once, and retried', () => {
    const dir = tempDir('seq-ro-');
    mkdirSync(join(dir, 'ro'));
    const file = join(dir, 'ro', 'sequence.json');
    chmodSync(join(dir, 'ro'), 0o500);
    const errors: Error[] = [];
    try {
      const a = new SequenceAllocator(file, 1, 5, (e) => errors.push(e));
      const taken = Array.from({ length: 12 }, () => a.take());
      expect(taken).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
      if (process.getuid?.() !== 0) {
        // (root writes anyway; as root this part proves only that numbering went on)
        expect(errors).toHaveLength(1);
        expect(a.unreserved).toBe(true);
      }
      chmodSync(join(dir, 'ro'), 0o700);
      a.retry();
      expect(a.reserveError).toBeNull();
      expect(SequenceAllocator.readReservation(file).reservedEnd).toBeGreaterThan(12);
    } finally {
      chmodSync(join(dir, 'ro'), 0o700);
    }
  });

  it('an unreadable reservation file is reported as such, not as missing', () => {
    const dir = tempDir('seq-bad-');
    writeFileSync(join(dir, 's.json'), 'not json');
    expect(SequenceAllocator.readReservation(join(dir, 's.json')).state).toBe('unreadable');
    expect(SequenceAllocator.readReservation(join(dir, 'none.json')).state).toBe('missing');
  });
});

describe('detectProtocol', () => {
  it('recognises the polled bus by its frames, and claims nothing for other bytes', () => {
    const parts: Buffer[] = [];
    for (let i = 0; i < 6; i++) {
      parts.push(encodeRequest(REQ_READ, PelotonCmd.POWER), encodeReply(PelotonCmd.POWER, 1500 + i, REPLY_DIGITS[PelotonCmd.POWER]));
    }
    expect(detectProtocol(Buffer.concat(parts))).toBe('peloton');
    const noise = Buffer.alloc(512);
    const r = seededRandom(3);
    for (let i = 0; i < noise.length; i++) noise[i] = Math.floor(r() * 256);
    expect(detectProtocol(noise)).toBeNull();
  });
});

describe('errors: one type, a code to branch on', () => {
  it('every error carries its code and keeps its cause; subclasses are still AgentErrors', () => {
    const cause = new Error('EACCES');
    const e = new ConfigError('calibration x: cannot read', 'calibration_invalid', { cause });
    expect(e).toBeInstanceOf(AgentError);
    expect(e.code).toBe('calibration_invalid');
    expect(e.name).toBe('ConfigError');
    expect(e.cause).toBe(cause);
    expect(new ConfigError('config.json: x: unknown key').code).toBe('config_invalid');
  });

  it('zod problems in one line: paths, unknown keys by name, a root label', () => {
    const S = z.object({ a: z.object({ b: z.number().max(3) }).strict(), c: z.string() }).strict();
    const r = S.safeParse({ a: { b: 9, typo: 1 }, c: 1, extra: true });
    expect(r.success).toBe(false);
    if (r.success) return;
    const text = issuesText(r.error, '(root)');
    expect(text).toContain('a.b: Number must be less than or equal to 3');
    expect(text).toContain('a.typo: unknown key');
    expect(text).toContain('extra: unknown key');
    expect(text).toContain('c: Expected string, received number');
    expect(issuesText(r.error, '(root)', true).split('; ')).toHaveLength(1);
    const top = z.number().safeParse('x');
    if (!top.success) expect(issuesText(top.error, 'value')).toBe('value: Expected number, received string');
  });

  it('an error logged as { err } reaches API clients as its type, code and message (JSON would make it {})', () => {
    const recent = new RecentLog();
    recent.add(50, [{ err: new ConfigError('bad key', 'config_invalid'), file: 'x.json' }, 'not starting']);
    const e = recent.last()!;
    expect(JSON.parse(JSON.stringify(e.fields))).toEqual({
      err: { type: 'ConfigError', message: 'bad key', code: 'config_invalid' },
      file: 'x.json',
    });
    expect(e).toMatchObject({ level: 'error', msg: 'not starting' });
  });
});

describe('num: the CLI’s numbers without ICU', () => {
  it('writes what en-US toLocaleString writes, for 20,000 seeded values of every size and sign, 0-3 decimals', () => {
    const rand = seededRandom(12);
    for (let i = 0; i < 20_000; i++) {
      const v = (rand() - 0.3) * 10 ** Math.floor(rand() * 12);
      const digits = i % 4;
      expect(num(v, digits), `${v} ${digits}`).toBe(
        v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }),
      );
    }
    for (const v of [0, -0, 1, -1, 999, 1000, -1000, 999_999.96, 1e15, 0.5, 2.5])
      expect(num(v, 1)).toBe(v.toLocaleString('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 1 }));
    expect([num(null), num(undefined), num(NaN), num(Infinity)]).toEqual(['–', '–', '–', '–']);
  });
});
