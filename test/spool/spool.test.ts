/** The spool on real SQLite files. */
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { LiveRecord } from '../../src/metrics/record.js';
import { MIGRATIONS, SCHEMA_VERSION } from '../../src/spool/schema.js';
import { ROW_COLUMNS } from '../../src/spool/columns.js';
import { SEQUENCE_FILE, SPOOL_FILE, Spool, SpoolTooNewError, type SpoolOptions } from '../../src/spool/spool.js';
import { tempDir } from '../helpers/agent.js';

const log = createLogger('silent');
const spools: Spool[] = [];
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const s of spools.splice(0)) s.close();
  for (const c of cleanups.splice(0)) c();
});

function open(dir: string, o: Partial<SpoolOptions> = {}): Spool {
  const s = Spool.open({ dir, deviceId: 'bike-test', maxBytes: 256 << 20, synchronous: 'NORMAL', memoryRecords: 36_000, log, ...o });
  spools.push(s);
  return s;
}

function record(i: number): LiveRecord {
  const r = new LiveRecord();
  r.tUs = i * 100_000;
  r.cadenceRpm = 80 + (i % 20) / 10;
  r.powerW = 150 + (i % 50);
  r.resistancePct = 42.35;
  r.flywheelRpm = 256.04;
  r.speedKmh = 31.234;
  r.hrBpm = i % 7 === 0 ? NaN : 130;
  r.distanceM = i * 0.87;
  r.energyKj = i * 0.015;
  r.flags = i % 3;
  return r;
}

const col = (name: (typeof ROW_COLUMNS)[number]) => ROW_COLUMNS.indexOf(name);

describe('spool', () => {
  it('commits queued records in one transaction per flush, in WAL mode, with values scaled and unknowns as NULL', () => {
    const dir = tempDir('spool-basic-');
    const s = open(dir);
    const t0 = Date.now();
    for (let i = 0; i < 25; i++) expect(s.append(record(i), 0)).toBe(i + 1);
    expect(s.read(0, 100)).toEqual([]); // nothing is visible before the commit
    expect(s.flush()).toBe(25);
    const rows = s.read(0, 100);
    expect(rows.map((r) => r[col('seq')])).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    const r7 = rows[7];
    expect(r7[col('t_us')]).toBe(700_000);
    // Wall time is engine time plus the offset measured at the first record: 100 ms apart, anchored at t0.
    expect(rows[0][col('wall_ms')]).toBeGreaterThanOrEqual(t0);
    expect(rows[0][col('wall_ms')]).toBeLessThanOrEqual(t0 + 1000);
    expect(r7[col('wall_ms')] - rows[0][col('wall_ms')]).toBe(700);
    expect(r7[col('cadence_drpm')]).toBe(807);
    expect(r7[col('power_dw')]).toBe(1570);
    expect(r7[col('resistance_dpct')]).toBe(424);
    expect(r7[col('speed_ckmh')]).toBe(3123);
    expect(r7[col('hr_bpm')]).toBeNull();
    expect(r7[col('energy_j')]).toBe(105);
    expect(r7[col('flags')]).toBe(1);
    const db = new Database(join(dir, SPOOL_FILE), { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    db.close();
    expect(s.stats()).toMatchObject({ records: 25, oldestSeq: 1, newestSeq: 25, nextSeq: 26, pendingRecords: 0, diskFull: false });
  });

  it('deletes exactly what was acknowledged, and reads onwards from a sequence number', () => {
    const s = open(tempDir('spool-ack-'));
    for (let i = 0; i < 100; i++) s.append(record(i), 0);
    s.flush();
    expect(s.read(40, 5).map((r) => r[0])).toEqual([41, 42, 43, 44, 45]);
    expect(s.ack(1, 40)).toBe(40);
    expect(s.ack(1, 40)).toBe(0); // a duplicate acknowledgement changes nothing
    expect(s.stats()).toMatchObject({ records: 60, oldestSeq: 41 });
  });

  it('acknowledged records leave the file with the next commit (one transaction and fsync a second); a crash before it sends them again, loses none', () => {
    const dir = tempDir('spool-ack-defer-');
    const s = open(dir);
    for (let i = 0; i < 100; i++) s.append(record(i), 0);
    s.flush();
    const onDisk = (): number => {
      const db = new Database(join(dir, SPOOL_FILE), { readonly: true });
      try {
        return (db.prepare('SELECT count(*) AS n FROM records').get() as { n: number }).n;
      } finally {
        db.close();
      }
    };
    // Live first, then the backlog: acknowledged ranges at both ends, and one in the middle.
    expect(s.ack(91, 100)).toBe(10);
    expect(s.ack(1, 30)).toBe(30);
    expect(s.ack(41, 50)).toBe(10);
    expect(s.stats()).toMatchObject({ records: 50, oldestSeq: 31, newestSeq: 90 });
    expect(s.read(30, 20).map((r) => r[0])).toEqual([31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50]);
    expect(onDisk()).toBe(100); // not yet: they go with the next commit
    // Overlaps a range still queued (a duplicate acknowledgement): the queued ones are deleted first, so only the 10 new count.
    expect(s.ack(45, 60)).toBe(10);
    expect(onDisk()).toBe(50);
    // The process dies here (no flush, no close): another opens the same files and has 51-60 to send again.
    const crashed = Spool.open({ dir, deviceId: 'bike-test', maxBytes: 256 << 20, synchronous: 'NORMAL', memoryRecords: 100, log });
    expect(crashed.stats()).toMatchObject({ records: 50, oldestSeq: 31, newestSeq: 90 });
    expect(crashed.read(50, 1).map((r) => r[0])).toEqual([51]);
    crashed.close();
    for (let i = 0; i < 5; i++) s.append(record(100 + i), 0);
    expect(s.flush()).toBe(5);
    expect(onDisk()).toBe(45);
    expect(s.stats()).toMatchObject({ records: 45, oldestSeq: 31, newestSeq: 105 });
    // Before reading from the start again (a new broker connection) they can be deleted at once.
    expect(s.ack(31, 40)).toBe(10);
    s.applyAcks();
    expect(onDisk()).toBe(35);
    expect(s.read(0, 3).map((r) => r[0])).toEqual([61, 62, 63]);
  });

  it('sequence numbers never repeat: across restarts, after a crash without close, and after the spool is moved aside', () => {
    const dir = tempDir('spool-seq-');
    const a = Spool.open({ dir, deviceId: 'b', maxBytes: 1 << 26, synchronous: 'NORMAL', memoryRecords: 100, log, sequenceBlock: 1000 });
    for (let i = 0; i < 10; i++) a.append(record(i), 0);
    a.flush();
    // A crash: never closed. A new process opens the same files.
    const b = open(dir, { sequenceBlock: 1000 });
    const first = b.append(record(0), 0);
    expect(first).toBeGreaterThan(10);
    expect(first).toBe(1001); // the whole reserved block is skipped: it may have been used
    b.close();
    a.close();
    // The spool is gone (moved aside by hand, or lost): numbering still continues.
    rmSync(join(dir, SPOOL_FILE));
    rmSync(join(dir, `${SPOOL_FILE}-wal`), { force: true });
    const c = open(dir, { sequenceBlock: 1000 });
    expect(c.append(record(0), 0)).toBeGreaterThan(1001);
    const beforeLoss = c.stats().nextSeq;
    c.close();
    // The reservation file is gone but the spool is not: the spool's highest number is the floor.
    rmSync(join(dir, SEQUENCE_FILE));
    const d = open(dir, { sequenceBlock: 1000 });
    expect(d.append(record(0), 0)).toBeGreaterThanOrEqual(beforeLoss);
  });

  it('stays under its size cap: evicts the oldest, keeps the newest, reports the gap with its exact size', () => {
    const dir = tempDir('spool-cap-');
    const maxBytes = 2 << 20;
    const s = open(dir, { maxBytes });
    const total = 150_000;
    let maxSeen = 0;
    for (let i = 0; i < total; i++) {
      s.append(record(i), 0);
      if (i % 10 === 9) {
        s.flush(); // one flush per second of riding
        maxSeen = Math.max(maxSeen, s.bytes());
      }
    }
    s.flush();
    const st = s.stats();
    expect(maxSeen).toBeLessThanOrEqual(maxBytes);
    expect(st.bytes).toBeLessThanOrEqual(maxBytes);
    expect(st.newestSeq).toBe(total); // the newest records are kept
    const gaps = s.unreportedGaps();
    expect(gaps.length).toBeGreaterThan(0);
    expect(gaps.every((g) => g.reason === 'evicted')).toBe(true);
    // The gaps tile the evicted range exactly: 1 .. oldest kept - 1.
    expect(gaps[0].firstSeq).toBe(1);
    for (let i = 1; i < gaps.length; i++) expect(gaps[i].firstSeq).toBe(gaps[i - 1].lastSeq + 1);
    expect(gaps[gaps.length - 1].lastSeq).toBe(st.oldestSeq! - 1);
    const evicted = gaps.reduce((n, g) => n + g.count, 0);
    expect(evicted).toBe(st.oldestSeq! - 1);
    expect(evicted + st.records).toBe(total);
    expect(st.evictedRecords).toBe(evicted);
    s.markGapsReported(gaps.map((g) => g.id));
    expect(s.unreportedGaps()).toEqual([]);
  });

  it('a spool overwritten with garbage is moved aside with a timestamp and replaced; numbering continues', () => {
    const dir = tempDir('spool-garbage-');
    const a = open(dir);
    for (let i = 0; i < 50; i++) a.append(record(i), 0);
    a.flush();
    a.close();
    const garbage = Buffer.alloc(64 * 1024);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 131 + 7) & 0xff;
    writeFileSync(join(dir, SPOOL_FILE), garbage);
    rmSync(join(dir, `${SPOOL_FILE}-wal`), { force: true });
    rmSync(join(dir, `${SPOOL_FILE}-shm`), { force: true });

    const b = open(dir);
    const st = b.stats();
    expect(st.movedAside).toHaveLength(1);
    expect(st.movedAside[0]).toMatch(/spool\.db\.corrupt-\d{4}-\d\d-\d\dT/);
    expect(readFileSync(st.movedAside[0]).equals(garbage)).toBe(true); // kept for a post-mortem
    expect(b.append(record(0), 0)).toBeGreaterThan(50);
    expect(b.flush()).toBe(1);
    expect(b.stats().records).toBe(1);
  });

  it('a spool that fails quick_check is moved aside too', () => {
    const dir = tempDir('spool-corrupt-');
    const a = open(dir);
    for (let i = 0; i < 5000; i++) a.append(record(i), 0);
    a.flush();
    a.close();
    // Damage a page in the middle of the records table, leaving the header intact.
    const file = join(dir, SPOOL_FILE);
    const bytes = readFileSync(file);
    bytes.fill(0xa5, 8 * 4096, 9 * 4096);
    writeFileSync(file, bytes);
    const b = open(dir);
    expect(b.stats().movedAside).toHaveLength(1);
    expect(b.stats().records).toBe(0);
  });

  it('a spool written by the previous schema (v1, before rides had summaries) is migrated in place, every record kept', () => {
    const dir = tempDir('spool-v1-');
    // What a v1 agent left: the v1 schema, records unacknowledged, an open ride.
    const db = new Database(join(dir, SPOOL_FILE));
    db.pragma('auto_vacuum = INCREMENTAL');
    db.pragma('journal_mode = WAL');
    db.exec(MIGRATIONS[0].sql);
    db.pragma('user_version = 1');
    db.prepare("INSERT INTO rides (id, ride_uuid, member, class_id, started_ms) VALUES (1, 'r-old', NULL, NULL, 1000)").run();
    const insert = db.prepare(`INSERT INTO records (${ROW_COLUMNS.join(', ')}) VALUES (${ROW_COLUMNS.map(() => '?').join(', ')})`);
    for (let i = 1; i <= 500; i++)
      insert.run(i, 1, i * 100_000, 1_700_000_000_000 + i * 100, 800, 1500, 400, 2560, 3123, 130, i * 9, i * 15, 0);
    db.close();
    const s = open(dir);
    expect(s.stats().schemaVersion).toBe(SCHEMA_VERSION);
    expect(s.stats().records).toBe(500);
    const rows = s.read(0, 1000);
    expect(rows).toHaveLength(500);
    expect(rows[499]).toEqual([500, 1, 50_000_000, 1_700_000_050_000, 800, 1500, 400, 2560, 3123, 130, 4500, 7500, 0]);
    expect(s.rides.get('r-old')).toMatchObject({ id: 1, summary: null, startedBy: 'auto', endedMs: null });
    // New records go on numbering after the old ones.
    expect(s.append(record(1), 0)).toBeGreaterThan(500);
  });

  it('refuses a spool from a newer agent and leaves it untouched', () => {
    const dir = tempDir('spool-newer-');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, SPOOL_FILE);
    const db = new Database(file);
    db.exec('CREATE TABLE future (x)');
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    const hash = createHash('sha256').update(readFileSync(file)).digest('hex');
    expect(() => open(dir)).toThrow(SpoolTooNewError);
    expect(() => open(dir)).toThrow(new RegExp(`spool schema ${SCHEMA_VERSION + 1}, newer than the ${SCHEMA_VERSION}`));
    expect(createHash('sha256').update(readFileSync(file)).digest('hex')).toBe(hash);
    expect(readdirSync(dir).filter((f) => f.includes('corrupt'))).toEqual([]);
  });

  it('a full disk: holds the newest records in bounded memory, counts the overflow, resumes when space returns', () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a 1 MB tmpfs and needs root (CI runs as root)');
    const mnt = tempDir('spool-full-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
    cleanups.push(() => execFileSync('umount', ['-l', mnt]));
    const s = open(mnt, { maxBytes: 64 << 20, memoryRecords: 500 });
    let seq = 0;
    // Fill the disk with a file we can delete later, then ride until the spool cannot write.
    writeFileSync(join(mnt, 'filler'), Buffer.alloc(700 * 1024));
    let i = 0;
    for (; i < 100_000 && !s.stats().diskFull; i++) {
      seq = s.append(record(i), 0);
      if (i % 10 === 9) s.flush();
    }
    expect(s.stats()).toMatchObject({ diskFull: true, writeFailing: true });
    expect(s.stats().lastWriteError).toMatch(/full/i);
    const committedBefore = s.stats().newestSeq!;
    // The ride goes on while the disk is full: 800 more records into a 500-record buffer.
    for (let k = 0; k < 800; k++, i++) {
      seq = s.append(record(i), 0);
      if (k % 10 === 9) expect(s.flush()).toBe(0);
    }
    expect(s.stats().pendingRecords).toBe(500);
    // Space returns.
    rmSync(join(mnt, 'filler'));
    const written = s.flush();
    expect(written).toBe(500);
    const st = s.stats();
    expect(st).toMatchObject({ diskFull: false, writeFailing: false });
    expect(st.newestSeq).toBe(seq); // the newest records made it
    const lost = s.unreportedGaps().filter((g) => g.reason === 'memory_overflow');
    expect(lost).toHaveLength(1);
    // Everything between the last committed record and the kept 500 is accounted for, exactly.
    expect(lost[0].firstSeq).toBeGreaterThan(committedBefore);
    expect(lost[0].lastSeq).toBe(seq - 500);
    expect(lost[0].count).toBe(lost[0].lastSeq - lost[0].firstSeq + 1);
    expect(st.droppedInMemory).toBe(lost[0].count);
    expect(existsSync(join(mnt, SPOOL_FILE))).toBe(true);
  });
});
