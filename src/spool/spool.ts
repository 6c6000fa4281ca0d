/**
 * The spool: every 10 Hz record, on disk, until the broker has acknowledged
 * the packet that carried it. One SQLite file under dataDir, in WAL mode.
 *
 * Promises (docs/service.md, "What is kept, and what can be lost"):
 * - records are committed in one transaction by flush(), which the owner calls
 *   at least once per second (the agent: its heartbeat, util/heartbeat.ts);
 * - every record has a per-device sequence number that never repeats;
 * - the file stays under `maxBytes`: the oldest records are evicted first and
 *   the eviction is kept as a gap (first, last, count) for the cloud to see;
 * - a file that is corrupt (not a database, SQLITE_CORRUPT, fails quick_check)
 *   is moved aside and replaced; a healthy file that cannot be opened right
 *   now (locked by another process, no permission, read-only, too many open
 *   files, a full disk) is never touched: open() throws SpoolUnavailableError
 *   and the agent tries again later;
 * - a full disk never stops the live pipeline: the newest records wait in a
 *   bounded memory buffer (overflow counted as a gap) until space returns;
 * - a spool written by a newer agent is refused untouched.
 *
 * Over 400 lines: opening with its corruption/unavailable triage, commits,
 * eviction and stats share one SQLite connection and its prepared statements
 * (the hot path appends without allocating through them).
 */
import { AgentError } from '../util/errors.js';
import type { SpoolHealth } from '../contracts/health.js';
import type Database from 'better-sqlite3';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log/logger.js';
import type { LiveRecord } from '../metrics/record.js';
import { RecordBatch } from './batch.js';
import { NULL_INT, ROW_COLUMNS, VALUE_COLUMNS } from './columns.js';
import { openSpoolFile } from './sqlite-file.js';
import { Outbox, RideStore, type PurgeResult } from './rides.js';
import { MIGRATIONS, SCHEMA_VERSION } from './schema.js';
import { errorCode, syncDir } from '../util/files.js';
import { SequenceAllocator, type Reservation } from './sequence.js';
import { WallClockMap } from './wall-clock.js';
import { SPOOL_FILE } from './files.js';

export type SyncMode = 'OFF' | 'NORMAL' | 'FULL';

export interface SpoolOptions {
  dir: string;
  deviceId: string;
  /** Cap on the spool's files (database and WAL), bytes. */
  maxBytes: number;
  /** SQLite `synchronous` in WAL mode; docs/service.md says what a power cut can lose with each. */
  synchronous: SyncMode;
  /** Records held in memory while the disk is full (36,000 = 1 hour at 10 Hz). */
  memoryRecords: number;
  log: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Sequence numbers reserved on disk at a time. */
  sequenceBlock?: number;
  /**
   * Told after each commit (once a second at most): how many records and the
   * highest sequence number now durable. The agent logs it at debug level, an
   * observer outside the machine (the power-cut tests) knows what a cut may not lose.
   */
  onCommit?: (records: number, lastSeq: number) => void;
  /** The wall clock, ms (tests inject one); default Date.now. */
  now?: () => number;
}

export { SPOOL_FILE };
export const SEQUENCE_FILE = 'sequence.json';

/** The file was written by a newer agent; it is left exactly as it is. */
export class SpoolTooNewError extends AgentError<'spool_too_new'> {
  constructor(
    readonly file: string,
    readonly fileVersion: number,
  ) {
    super(
      'spool_too_new',
      `${file} has spool schema ${fileVersion}, newer than the ${SCHEMA_VERSION} this agent supports; refusing to touch it (upgrade the agent)`,
    );
  }
}

/**
 * A healthy spool that cannot be opened now (locked, EACCES, EROFS, EMFILE,
 * SQLITE_FULL, an I/O error). Nothing was moved or changed; try again later.
 */
export class SpoolUnavailableError extends AgentError<'spool_unavailable'> {
  constructor(
    readonly file: string,
    /** The SQLite or system error code behind it (SQLITE_BUSY, EACCES, ...). */
    readonly reason: string,
    message: string,
  ) {
    super('spool_unavailable', `${file}: cannot open now (${reason}): ${message}`);
  }
}

/** The file is damaged: the only case in which it is moved aside. */
class SpoolCorruptError extends AgentError<'spool_corrupt'> {
  constructor(message: string) {
    super('spool_corrupt', message);
  }
}

/** SQLite says the file itself is bad (extended codes included: SQLITE_CORRUPT_INDEX, ...). */
const isCorruption = (err: unknown): boolean => {
  if (err instanceof SpoolCorruptError) return true;
  const code = errorCode(err);
  return code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB';
};

export interface Gap {
  id: number;
  firstSeq: number;
  lastSeq: number;
  count: number;
  reason: 'evicted' | 'memory_overflow';
  atMs: number;
}

/** A committed record as the uploader reads it: [seq, ride, t_us, wall_ms, ...values, flags]. */
export type SpoolRow = number[];

/** The spool's figures as the health contract shows them (contracts/health.ts). */
export type SpoolStats = Omit<SpoolHealth, 'state'>;

const isDiskFull = (err: unknown): boolean => {
  const code = errorCode(err);
  return code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT';
};

/** Evict down to this fraction of the cap, so eviction runs in steps, not per record. */
const LOW_WATER = 0.85;
/** Start evicting above this fraction of the cap (headroom for the WAL between checkpoints). */
const HIGH_WATER = 0.95;

export class Spool {
  readonly file: string;
  readonly rides: RideStore;
  readonly outbox: Outbox;
  private readonly db: Database.Database;
  private readonly seq: SequenceAllocator;
  private readonly pending: RecordBatch;
  private readonly insert: Database.Statement;
  private readonly insertGap: Database.Statement;
  /** The uploader's read, for the one limit it asks with (see read()). */
  private selectAfter: Database.Statement | null = null;
  private selectAfterLimit = 0;
  private readonly deleteRange: Database.Statement;
  private readonly countRange: Database.Statement;
  private readonly selectOldestAfter: Database.Statement;
  private readonly selectNewestBefore: Database.Statement;
  /**
   * Ranges the broker acknowledged (first, last, first, last, ...), deleted
   * in the next commit's transaction: one fsync a second for both, not two.
   * A crash before that commit sends them again (whole duplicate packets the
   * cloud drops by their keys); nothing is lost.
   */
  private readonly acked: number[] = [];
  private readonly deleteAcked: () => void;
  private readonly selectGaps: Database.Statement;
  private readonly markGap: Database.Statement;
  private readonly selectRange: Database.Statement;
  private readonly countGaps: Database.Statement;
  private readonly setFloor: Database.Statement;
  private readonly writeBatch: (n: number) => void;
  private readonly pageSize: number;
  private records: number;
  /**
   * The engine time of the newest record this spool ever committed (0 for a
   * new spool): the agent's records continue after it, so t_ms never goes
   * backwards across restarts.
   */
  readonly priorTUs: number;
  private diskFull = false;
  private writeFailing = false;
  private lastWriteError: string | null = null;
  private evicted = 0;
  private droppedInMemory = 0;
  private closed = false;
  /** When flush() last ran (the watchdog checks the commit loop is alive). */
  lastFlushMs = Date.now();

  private constructor(
    private readonly opts: SpoolOptions,
    db: Database.Database,
    private readonly movedAside: string[],
  ) {
    this.db = db;
    this.file = join(opts.dir, SPOOL_FILE);
    this.pageSize = db.pragma('page_size', { simple: true }) as number;
    this.rides = new RideStore(db);
    this.outbox = new Outbox(db);
    const max = db
      .prepare(
        "SELECT max(seq) AS s FROM (SELECT max(seq) AS seq FROM records UNION ALL SELECT max(last_seq) FROM gaps UNION ALL SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'seq_high')",
      )
      .get() as { s: number | null };
    const floor = (max.s ?? 0) + 1;
    this.newestCommitted = floor - 1;
    const seqFile = join(opts.dir, SEQUENCE_FILE);
    const reservation = SequenceAllocator.readReservation(seqFile);
    this.seq = new SequenceAllocator(
      seqFile,
      floor,
      opts.sequenceBlock,
      (err) =>
        opts.log.error(
          { err, file: seqFile, nextSeq: this.seq.peek() },
          'cannot reserve sequence numbers on disk: numbering goes on, each commit keeps the floor; retried every flush',
        ),
      reservation,
    );
    Spool.reportReservation(opts, seqFile, reservation, floor, movedAside.length > 0, this.seq.peek());
    // Both in one statement: it runs with every commit.
    this.setFloor = db.prepare(
      "INSERT INTO meta (key, value) VALUES ('seq_high', ?), ('last_t_us', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    );
    const lastT = db
      .prepare(
        "SELECT max(t) AS t FROM (SELECT max(t_us) AS t FROM records UNION ALL SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_t_us')",
      )
      .get() as { t: number | null };
    this.priorTUs = lastT.t ?? 0;
    this.records = (db.prepare('SELECT count(*) AS n FROM records').get() as { n: number }).n;
    this.pending = new RecordBatch(opts.memoryRecords);
    const cols = ROW_COLUMNS.join(', ');
    this.insert = db.prepare(`INSERT INTO records (${cols}) VALUES (${ROW_COLUMNS.map(() => '?').join(', ')})`);
    this.insertGap = db.prepare('INSERT INTO gaps (first_seq, last_seq, count, reason, at_ms) VALUES (?, ?, ?, ?, ?)');
    // Prepared once: the uploader reads and acknowledges every second.
    this.deleteRange = db.prepare('DELETE FROM records WHERE seq BETWEEN ? AND ?');
    this.countRange = db.prepare('SELECT count(*) FROM records WHERE seq BETWEEN ? AND ?').pluck(true);
    this.selectOldestAfter = db.prepare('SELECT min(seq) FROM records WHERE seq > ?').pluck(true);
    this.selectNewestBefore = db.prepare('SELECT max(seq) FROM records WHERE seq < ?').pluck(true);
    const acked = this.acked;
    const deleteAcked = (): void => {
      for (let i = 0; i < acked.length; i += 2) this.deleteRange.run(acked[i], acked[i + 1]);
    };
    this.deleteAcked = db.transaction(deleteAcked);
    this.selectGaps = db.prepare('SELECT id, first_seq, last_seq, count, reason, at_ms FROM gaps WHERE reported = 0 ORDER BY first_seq');
    this.markGap = db.prepare('UPDATE gaps SET reported = 1 WHERE id = ?');
    // Two subqueries, not min() and max() in one: SQLite looks up a lone min() or max() at an end of the
    // index, but computes both together by reading every record (400 ms on four days of records, and
    // health asks for this on every status, stats line and watchdog ping).
    this.selectRange = db.prepare('SELECT (SELECT min(seq) FROM records) AS oldest, (SELECT max(seq) FROM records) AS newest');
    this.countGaps = db.prepare('SELECT count(*) AS n FROM gaps WHERE reported = 0');
    const row: (number | null)[] = new Array<number | null>(ROW_COLUMNS.length).fill(0);
    const p = this.pending;
    const nv = VALUE_COLUMNS.length;
    this.writeBatch = db.transaction((n: number) => {
      deleteAcked();
      // Records pushed out of the memory buffer are recorded with the records that follow them.
      if (p.dropped > 0) this.insertGap.run(p.droppedFirst, p.droppedLast, p.dropped, 'memory_overflow', Date.now());
      for (let k = 0; k < n; k++) {
        const i = p.index(k);
        row[0] = p.seq[i];
        row[1] = p.ride[i];
        row[2] = p.tUs[i];
        row[3] = p.wallMs[i];
        for (let c = 0; c < nv; c++) {
          const v = p.values[c * p.capacity + i];
          row[4 + c] = v === NULL_INT ? null : v;
        }
        row[4 + nv] = p.flags[i];
        this.insert.run(row);
      }
      // The floor travels with the records: a drained spool still knows the highest number used,
      // and the latest engine time, from which the next run's records continue (SPEC.md 7).
      if (n > 0) this.setFloor.run(p.seq[p.index(n - 1)], p.tUs[p.index(n - 1)]);
    });
  }

  /**
   * Open (or create) the spool in opts.dir. A corrupt file is moved aside and
   * replaced; a newer schema throws SpoolTooNewError and any other failure
   * SpoolUnavailableError, both without touching the file.
   */
  static open(opts: SpoolOptions): Spool {
    const file = join(opts.dir, SPOOL_FILE);
    const movedAside: string[] = [];
    let db: Database.Database;
    try {
      mkdirSync(opts.dir, { recursive: true });
      db = Spool.openChecked(file, opts);
    } catch (err) {
      if (err instanceof SpoolTooNewError) throw err;
      if (!isCorruption(err)) throw new SpoolUnavailableError(file, errorCode(err), (err as Error).message);
      const aside = Spool.moveAside(file);
      movedAside.push(aside);
      opts.log.error({ err, file, movedTo: aside }, 'spool unreadable: moved aside, starting a new one');
      try {
        db = Spool.openChecked(file, opts);
      } catch (err2) {
        throw new SpoolUnavailableError(file, errorCode(err2), (err2 as Error).message);
      }
    }
    try {
      const spool = new Spool(opts, db, movedAside);
      spool.enforceCap();
      return spool;
    } catch (err) {
      db.close();
      throw new SpoolUnavailableError(file, errorCode(err), (err as Error).message);
    }
  }

  /** Say what the sequence reservation looked like when it is not the normal case (M2: never a silent restart at 1). */
  private static reportReservation(
    opts: SpoolOptions,
    file: string,
    r: Reservation,
    floor: number,
    movedAside: boolean,
    next: number,
  ): void {
    if (r.state === 'ok') return;
    if (r.state === 'missing' && floor === 1 && !movedAside) {
      opts.log.info({ file, nextSeq: next }, 'sequence numbering starts');
      return;
    }
    const lost = floor === 1 && r.reservedEnd === 0;
    const fields = { file, state: r.state, error: r.error, spoolFloor: floor, nextSeq: next, spoolMovedAside: movedAside };
    if (lost)
      opts.log.error(
        fields,
        'sequence reservation and spool floor both lost: numbering restarts; the cloud may drop new records as duplicates',
      );
    else opts.log.warn(fields, 'sequence reservation unreadable: numbering continues above the spool floor');
  }

  private static openChecked(file: string, opts: SpoolOptions): Database.Database {
    // A spool held by another process waits up to 5 s, then is unavailable (never "corrupt").
    // The page cache is capped as it opens (sqlite-file.ts): quick_check below reads every page.
    const db = openSpoolFile(file, { timeout: 5000 });
    try {
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) throw new SpoolTooNewError(file, version);
      const check = db.pragma('quick_check', { simple: true }) as string;
      if (check !== 'ok') throw new SpoolCorruptError(`quick_check: ${check}`);
      if (version === 0) {
        // Must precede the first table: lets eviction give pages back to the filesystem.
        db.pragma('auto_vacuum = INCREMENTAL');
      }
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${opts.synchronous}`);
      // Deleted rows and freed pages are zeroed: a purged member's pseudonym is not left in free pages.
      db.pragma('secure_delete = ON');
      // Keep the WAL small relative to the cap: checkpoint every 1/32 of it.
      const pageSize = db.pragma('page_size', { simple: true }) as number;
      const walPages = Math.max(16, Math.min(1000, Math.floor(opts.maxBytes / pageSize / 32)));
      db.pragma(`wal_autocheckpoint = ${walPages}`);
      db.pragma(`journal_size_limit = ${walPages * pageSize}`);
      Spool.migrate(db, version, opts);
      db.prepare('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)').run('device_id', opts.deviceId);
      return db;
    } catch (err) {
      db.close();
      throw err;
    }
  }

  private static migrate(db: Database.Database, from: number, opts: SpoolOptions): void {
    for (const m of MIGRATIONS) {
      if (m.version <= from) continue;
      db.transaction(() => {
        db.exec(m.sql);
        db.pragma(`user_version = ${m.version}`);
      })();
      opts.log.info({ version: m.version, description: m.description }, 'spool schema migrated');
    }
  }

  private static moveAside(file: string): string {
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const aside = `${file}.corrupt-${stamp}`;
    for (const suffix of ['', '-wal', '-shm']) {
      if (existsSync(file + suffix)) renameSync(file + suffix, aside + suffix);
    }
    syncDir(join(file, '..'));
    return aside;
  }

  /**
   * Queue one record; it is committed by the next flush. Returns its sequence
   * number. Allocates nothing: its wall time is its engine time plus the
   * offset measured at the last flush (measureWallOffset).
   */
  append(r: LiveRecord, ride: number): number {
    const seq = this.seq.take();
    if (!this.offsetKnown) this.measureWallOffset(r.tUs);
    this.lastTUs = r.tUs;
    this.pending.push(seq, ride, r);
    return seq;
  }

  private offsetKnown = false;
  private lastTUs = 0;

  /**
   * The wall-clock offset in force: wall time now minus the engine time of the
   * newest record, filtered. Measured once a second (at flush) and at the
   * first record, so a wall-clock step (NTP after boot) shows within a second
   * and never reorders records, which are ordered by sequence number.
   */
  private measureWallOffset(tUs: number): void {
    this.pending.wallOffset[0] = this.wallClock.measure(this.now(), tUs);
    this.offsetKnown = true;
  }

  /** Filtered: one offset for long stretches, never backwards between records (spool/wall-clock.ts). */
  private readonly wallClock = new WallClockMap();
  private get now(): () => number {
    return this.opts.now ?? Date.now;
  }

  /**
   * Place the records that follow on the wall clock from this offset (wall ms
   * minus engine ms): the offset the records held before the spool opened were
   * placed with, so wall time does not step back after them. `newestTUs` is
   * the engine time of the newest of them, what the next flush measures
   * against if no record comes first.
   */
  continueWallClock(offsetMs: number, newestTUs: number): void {
    this.wallClock.continueFrom(offsetMs);
    this.pending.wallOffset[0] = offsetMs;
    this.offsetKnown = true;
    this.lastTUs = newestTUs;
  }

  /**
   * Take over records held before the spool could be opened (the agent keeps
   * them while the spool is unavailable): numbered now, in order, committed
   * by the next flush. Returns how many.
   */
  adopt(held: RecordBatch): number {
    const n = held.length;
    for (let k = 0; k < n; k++) this.pending.pushFrom(held, held.index(k), this.seq.take());
    held.shift(n);
    return n;
  }

  /**
   * Commit the queued records in one transaction. On a full disk they stay
   * queued (the newest `memoryRecords`) and the next flush tries again.
   * Returns the number committed.
   */
  flush(): number {
    if (this.closed) return 0;
    this.lastFlushMs = Date.now();
    const p = this.pending;
    if (this.offsetKnown) this.measureWallOffset(this.lastTUs);
    this.seq.retry();
    const n = p.length;
    const dropped = p.dropped;
    try {
      if (n > 0 || dropped > 0 || this.acked.length > 0) this.writeBatch(n);
      this.acked.length = 0;
    } catch (err) {
      // Deleting what the broker has may be what frees the room the records need.
      try {
        this.applyAcks();
      } catch {
        // the same failure, already reported below; tried again at the next flush
      }
      // A full disk, or any other write failure (an I/O error on worn flash):
      // the records stay queued (the newest memoryRecords) and the next flush
      // tries again. The live pipeline never stops for the spool.
      const message = (err as Error).message;
      if (!this.writeFailing) {
        // A state change, said once; it clears with "spool writable again".
        this.opts.log.error({ err, queued: n, diskFull: isDiskFull(err) }, 'spool cannot write: holding the newest records in memory');
      }
      this.diskFull = isDiskFull(err);
      this.lastWriteError = message;
      this.writeFailing = true;
      return 0;
    }
    if (this.writeFailing) this.opts.log.info({ written: n, droppedWhileFailing: dropped }, 'spool writable again');
    this.diskFull = false;
    this.writeFailing = false;
    this.droppedInMemory += dropped;
    p.clearDropped();
    if (n > 0) {
      this.newestCommitted = Math.max(this.newestCommitted, p.seq[p.index(n - 1)]);
      if (this.opts.onCommit) this.opts.onCommit(n, p.seq[p.index(n - 1)]);
    }
    p.shift(n);
    this.records += n;
    try {
      this.enforceCap();
    } catch (err) {
      // Eviction needs a little room too; it is tried again at the next flush.
      this.opts.log.warn({ err }, 'spool eviction failed: tried again at the next flush');
    }
    return n;
  }

  /** The write side's condition, cheaply (status topic, health): ok, disk_full or write_failing. */
  get condition(): 'ok' | 'disk_full' | 'write_failing' {
    return !this.writeFailing ? 'ok' : this.diskFull ? 'disk_full' : 'write_failing';
  }

  /** Size of the spool's files on disk. */
  bytes(): number {
    let total = 0;
    for (const suffix of ['', '-wal']) {
      try {
        total += statSync(this.file + suffix).size;
      } catch {
        // no WAL right now
      }
    }
    return total;
  }

  /**
   * Keep the files under the cap: evict the oldest records (recording the gap),
   * give the freed pages back, and truncate the WAL.
   */
  private enforceCap(): void {
    const max = this.opts.maxBytes;
    if (this.bytes() <= max * HIGH_WATER) return;
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    for (let round = 0; round < 20 && this.bytes() > max * LOW_WATER && this.records > 0; round++) {
      const pages = this.db.pragma('page_count', { simple: true }) as number;
      const free = this.db.pragma('freelist_count', { simple: true }) as number;
      const usedBytes = (pages - free) * this.pageSize;
      // Evict the share of records that brings used pages down to the low-water mark.
      const share = Math.min(1, Math.max(0.01, 1 - (max * LOW_WATER) / Math.max(usedBytes, 1)));
      const count = Math.max(1, Math.ceil(this.records * share));
      const range = this.db
        .prepare('SELECT min(seq) AS first, max(seq) AS last, count(*) AS n FROM (SELECT seq FROM records ORDER BY seq LIMIT ?)')
        .get(count) as { first: number; last: number; n: number };
      this.db.transaction(() => {
        this.db.prepare('DELETE FROM records WHERE seq <= ?').run(range.last);
        this.insertGap.run(range.first, range.last, range.n, 'evicted', Date.now());
      })();
      this.records -= range.n;
      this.evicted += range.n;
      this.opts.log.warn(
        { firstSeq: range.first, lastSeq: range.last, count: range.n, maxBytes: max },
        'spool full: evicted the oldest records',
      );
      this.db.pragma('incremental_vacuum');
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    }
  }

  /** Committed records after `afterSeq`, oldest first, at most `limit` (a positive integer). */
  read(afterSeq: number, limit: number): SpoolRow[] {
    if (limit !== this.selectAfterLimit || !this.selectAfter) {
      if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`read limit must be a positive integer, got ${limit}`);
      // The limit in the SQL text, not bound: better-sqlite3's SQLite (STAT4) lets the planner look at a bound
      // LIMIT, so binding it recompiled the statement on every call (6 % of the agent's CPU at 50 Hz, profiled).
      this.selectAfter = this.db
        .prepare(`SELECT ${ROW_COLUMNS.join(', ')} FROM records WHERE seq > ? ORDER BY seq LIMIT ${limit}`)
        .raw(true);
      this.selectAfterLimit = limit;
    }
    return this.selectAfter.all(afterSeq) as SpoolRow[];
  }

  /**
   * At least the highest sequence number committed (0 for a new spool):
   * nothing after it is in the spool, so a reader caught up to it need not
   * look (the uploader's once-a-second poll, most of the time).
   */
  get newestSeq(): number {
    return this.newestCommitted;
  }

  private newestCommitted = 0;

  /**
   * The broker acknowledged seq first..last: they are deleted with the next
   * commit (within a second, or by applyAcks()). Returns how many records that is.
   */
  ack(firstSeq: number, lastSeq: number): number {
    // An acknowledgement overlapping one still queued (a duplicate) must not count its records twice.
    if (this.ackedRangeOf(firstSeq) >= 0 || this.ackedRangeOf(lastSeq) >= 0) this.applyAcks();
    const n = this.countRange.get(firstSeq, lastSeq) as number;
    this.acked.push(firstSeq, lastSeq);
    this.records -= n;
    return n;
  }

  /** Index in `acked` of the queued range holding `seq`, or -1. */
  private ackedRangeOf(seq: number): number {
    const a = this.acked;
    for (let i = 0; i < a.length; i += 2) if (seq >= a[i] && seq <= a[i + 1]) return i;
    return -1;
  }

  /** Oldest and newest record still to be sent: acknowledged ones waiting for the next commit do not count. */
  private range(): { oldest: number | null; newest: number | null } {
    let { oldest, newest } = this.selectRange.get() as { oldest: number | null; newest: number | null };
    for (let i = this.ackedRangeOf(oldest ?? -1); oldest !== null && i >= 0; i = this.ackedRangeOf(oldest ?? -1)) {
      oldest = this.selectOldestAfter.get(this.acked[i + 1]) as number | null;
    }
    for (let i = this.ackedRangeOf(newest ?? -1); newest !== null && i >= 0; i = this.ackedRangeOf(newest ?? -1)) {
      newest = this.selectNewestBefore.get(this.acked[i]) as number | null;
    }
    return { oldest, newest };
  }

  /** Delete the acknowledged records now (before reading the spool again from its start). */
  applyAcks(): void {
    if (this.acked.length === 0) return;
    this.deleteAcked();
    this.acked.length = 0;
  }

  /**
   * Delete every ride of one (pseudonymised) member and all their records,
   * queued ones included (committed first so none escapes).
   */
  purgeMember(member: string): PurgeResult {
    this.flush();
    const result = this.rides.purgeMember(member);
    this.records -= result.records;
    // Old page images in the WAL still hold the member's rows: copy back and truncate it.
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch (err) {
      this.opts.log.warn({ err }, 'wal checkpoint after a purge failed: the next checkpoint overwrites the old pages');
    }
    return result;
  }

  unreportedGaps(): Gap[] {
    return (
      this.selectGaps.all() as Array<{
        id: number;
        first_seq: number;
        last_seq: number;
        count: number;
        reason: Gap['reason'];
        at_ms: number;
      }>
    ).map((g) => ({ id: g.id, firstSeq: g.first_seq, lastSeq: g.last_seq, count: g.count, reason: g.reason, atMs: g.at_ms }));
  }

  /** The packet reporting these gaps was acknowledged. */
  markGapsReported(ids: readonly number[]): void {
    this.db.transaction(() => ids.forEach((id) => this.markGap.run(id)))();
  }

  stats(): SpoolStats {
    const range = this.range();
    const gaps = (this.countGaps.get() as { n: number }).n;
    return {
      file: this.file,
      bytes: this.bytes(),
      maxBytes: this.opts.maxBytes,
      records: this.records,
      oldestSeq: range.oldest,
      newestSeq: range.newest,
      nextSeq: this.seq.peek(),
      pendingRecords: this.pending.length,
      diskFull: this.diskFull,
      writeFailing: this.writeFailing,
      lastWriteError: this.lastWriteError,
      sequenceReserveError: this.seq.reserveError,
      evictedRecords: this.evicted,
      droppedInMemory: this.droppedInMemory + this.pending.dropped,
      unreportedGaps: gaps,
      outbox: this.outbox.size(),
      movedAside: this.movedAside,
      schemaVersion: this.db.pragma('user_version', { simple: true }) as number,
      synchronous: this.opts.synchronous,
    };
  }

  /** Commit what is queued and close. Records still queued on a full disk are lost, and logged. */
  close(): void {
    if (this.closed) return;
    this.flush();
    if (this.pending.length > 0) this.opts.log.error({ lost: this.pending.length }, 'spool closed with records it could not write');
    this.closed = true;
    this.db.close();
  }
}
