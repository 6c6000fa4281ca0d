/**
 * The spool's state under faults nobody planned for (issue 15: M1, M2, H4's
 * sequence reservation, and the purge leaving a pseudonym in free pages).
 * Real SQLite files; a real small tmpfs for the full disk; a second real
 * process for the lock.
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import type { LiveRecord } from '../../src/metrics/record.js';
import { SEQUENCE_FILE, SPOOL_FILE, Spool, SpoolUnavailableError, type SpoolOptions } from '../../src/spool/spool.js';
import { tempDir } from '../helpers/agent.js';

const lines: Array<Record<string, unknown>> = [];
const log = {
  info: (o: object, m?: string) => void lines.push({ level: 'info', msg: m, ...o }),
  warn: (o: object, m?: string) => void lines.push({ level: 'warn', msg: m, ...o }),
  error: (o: object, m?: string) => void lines.push({ level: 'error', msg: m, ...o }),
} as unknown as ReturnType<typeof createLogger>;

function record(i: number): LiveRecord {
  // Only the fields the spool stores; the rest of a LiveRecord is not read here.
  return {
    tUs: i * 100_000,
    cadenceRpm: 80,
    powerW: 150,
    resistancePct: 40,
    flywheelRpm: 256,
    speedKmh: 31.2,
    hrBpm: 130,
    distanceM: i,
    energyKj: i / 100,
    flags: 0,
  };
}

function open(dir: string, o: Partial<SpoolOptions> = {}): Spool {
  return Spool.open({ dir, deviceId: 'bike-state', maxBytes: 1 << 26, synchronous: 'FULL', memoryRecords: 5000, log, ...o });
}

const mounts: string[] = [];
afterAll(() => {
  for (const m of mounts) execFileSync('umount', ['-l', m]);
});

describe('M1: only a corrupt spool is set aside', () => {
  it('a healthy spool held by another process is unavailable (not corrupt): untouched, every record kept', async () => {
    const dir = tempDir('spool-locked-');
    const a = open(dir);
    for (let i = 0; i < 76; i++) a.append(record(i), 0);
    a.flush();
    a.close();
    // Another process takes the write lock and holds it for 7 s (longer than the 5 s busy wait).
    const sqlite = createRequire(import.meta.url).resolve('better-sqlite3');
    const holder = spawn(process.execPath, [
      '-e',
      `const D = require(${JSON.stringify(sqlite)}); const db = new D(${JSON.stringify(join(dir, SPOOL_FILE))}); db.exec('BEGIN EXCLUSIVE'); console.log('locked'); setTimeout(() => { db.exec('COMMIT'); process.exit(0); }, 7000);`,
    ]);
    await new Promise<void>((r) => holder.stdout.once('data', () => r()));
    expect(() => open(dir)).toThrow(SpoolUnavailableError);
    try {
      open(dir);
    } catch (err) {
      expect((err as SpoolUnavailableError).code).toBe('spool_unavailable');
      expect((err as SpoolUnavailableError).reason).toMatch(/^SQLITE_BUSY/);
    }
    expect(readdirSync(dir).filter((f) => f.includes('corrupt'))).toEqual([]);
    await new Promise<void>((r) => holder.once('exit', () => r()));
    const b = open(dir);
    expect(b.stats().records).toBe(76);
    expect(b.stats().movedAside).toEqual([]);
    b.close();
  }, 30_000);
});

describe('M2: numbering never silently restarts', () => {
  it('with sequence.json gone or garbage and the spool drained, numbering continues above every number used, and says so', () => {
    for (const damage of ['delete', 'garbage'] as const) {
      const dir = tempDir(`spool-seq-${damage}-`);
      const a = open(dir, { sequenceBlock: 1000 });
      let last = 0;
      for (let i = 0; i < 300; i++) last = a.append(record(i), 0);
      a.flush();
      a.ack(1, last); // the broker acknowledged everything: the spool is drained
      expect(a.stats().records).toBe(0);
      a.close();
      if (damage === 'delete') rmSync(join(dir, SEQUENCE_FILE));
      else writeFileSync(join(dir, SEQUENCE_FILE), '{"reservedEnd": "x"');
      lines.length = 0;
      const b = open(dir, { sequenceBlock: 1000 });
      expect(b.append(record(0), 0)).toBe(last + 1);
      expect(lines.some((l) => l.msg === 'sequence reservation unreadable: numbering continues above the spool floor')).toBe(true);
      b.close();
    }
  });
});

describe('H4: a sequence block that cannot be reserved on a full disk', () => {
  it('never throws; numbers keep rising; what is committed keeps the floor; the reservation catches up when space returns; no temporary files', () => {
    const mnt = join(tempDir('spool-full-'), 'mnt');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mnt]);
    mounts.push(mnt);
    const s = open(mnt, { sequenceBlock: 50, maxBytes: 1 << 20 });
    for (let i = 0; i < 10; i++) s.append(record(i), 0);
    expect(s.flush()).toBe(10);
    const staleReservation = readFileSync(join(mnt, SEQUENCE_FILE));
    const filler = join(mnt, 'filler');
    const fd = openSync(filler, 'w');
    try {
      for (;;) writeSync(fd, Buffer.alloc(4096));
    } catch {
      // full
    } finally {
      closeSync(fd);
    }
    lines.length = 0;
    const seqs: number[] = [];
    // 300 records cross six block boundaries, each reservation failing.
    for (let i = 0; i < 300; i++) seqs.push(s.append(record(i), 0));
    for (let k = 1; k < seqs.length; k++) expect(seqs[k]).toBe(seqs[k - 1] + 1);
    // SQLite still has room in its WAL: the records commit while the reservation file cannot be written.
    expect(s.flush()).toBe(300);
    expect(s.stats().sequenceReserveError).toMatch(/ENOSPC/);
    expect(lines.filter((l) => String(l.msg).startsWith('cannot reserve sequence numbers')).length).toBe(1);
    expect(readdirSync(mnt).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    // A crash now: the reservation on disk is below numbers the spool committed (and the broker may acknowledge).
    expect(readFileSync(join(mnt, SEQUENCE_FILE)).equals(staleReservation)).toBe(true);
    s.close();
    rmSync(filler);
    const b = open(mnt, { sequenceBlock: 50, maxBytes: 1 << 20 });
    b.ack(1, seqs.at(-1)!); // every record acknowledged: the spool is drained
    b.close();
    writeFileSync(join(mnt, SEQUENCE_FILE), staleReservation);
    const c = open(mnt, { sequenceBlock: 50, maxBytes: 1 << 20 });
    expect(c.stats().records).toBe(0);
    // The spool's own floor (kept with every commit) is above every number that left it.
    expect(c.append(record(0), 0)).toBeGreaterThan(seqs.at(-1)!);
    expect(c.flush()).toBe(1);
    expect(c.stats().sequenceReserveError).toBeNull();
    const reserved = JSON.parse(readFileSync(join(mnt, SEQUENCE_FILE), 'utf8')) as { reservedEnd: number };
    expect(reserved.reservedEnd).toBeGreaterThan(seqs.at(-1)!);
    c.close();
  });
});

describe('a purge leaves no copy of the pseudonym in the spool files', () => {
  it('free pages are zeroed and the WAL truncated; only the purge notice (for the cloud) holds it, and not after it is sent', () => {
    const dir = tempDir('spool-purge-');
    const s = open(dir);
    const member = 'm1.PSEUDONYM-THAT-MUST-GO-AWAY-0123456789';
    for (let r = 0; r < 20; r++) {
      const id = s.rides.create(`ride-${r}`, member, null, Date.now(), 'api');
      for (let i = 0; i < 50; i++) s.append(record(i), id);
      s.flush();
    }
    const copies = (): number => {
      let n = 0;
      for (const f of [SPOOL_FILE, `${SPOOL_FILE}-wal`]) {
        if (!existsSync(join(dir, f))) continue;
        const bytes = readFileSync(join(dir, f));
        for (let at = bytes.indexOf(member); at >= 0; at = bytes.indexOf(member, at + 1)) n++;
      }
      return n;
    };
    expect(copies()).toBeGreaterThan(1);
    const result = s.purgeMember(member);
    expect(result.rides).toHaveLength(20);
    expect(copies()).toBe(0);
    // The notice to the cloud carries it until the broker acknowledges it.
    const id = s.outbox.add('purge', Buffer.from(JSON.stringify({ member })));
    s.outbox.delete(id);
    s.close();
    expect(copies()).toBe(0);
  });
});
