/**
 * The spool file opened read-only, for the CLI: works whether or not the
 * agent is running (SQLite WAL lets a reader in beside the writer) and never
 * changes the file.
 */
import { AgentError } from '../util/errors.js';
import type Database from 'better-sqlite3';
import { openSpoolFile } from './sqlite-file.js';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROW_COLUMNS, VALUE_COLUMNS } from './columns.js';
import { RideStore, type RideRow } from './rides.js';
import { SCHEMA_VERSION } from './schema.js';
import type { Gap } from './spool.js';
import { SPOOL_FILE } from './files.js';

/** No spool a reader can use here: none at all, one to be migrated by the agent, or one from a newer agent. */
export class SpoolMissingError extends AgentError<'spool_missing' | 'spool_needs_migration' | 'spool_too_new'> {}

/** A record in units (the spool's scaled integers divided back). */
export interface ExportRecord {
  seq: number;
  ride: string | null;
  wallTime: string;
  tMs: number;
  cadenceRpm: number | null;
  powerW: number | null;
  resistancePct: number | null;
  flywheelRpm: number | null;
  speedKmh: number | null;
  hrBpm: number | null;
  distanceM: number | null;
  energyKj: number | null;
  flags: number;
}

export const EXPORT_FIELDS = ['seq', 'ride', 'wallTime', 'tMs', ...VALUE_COLUMNS.map((c) => c.field), 'flags'] as const;

export interface SpoolSummary {
  file: string;
  bytes: number;
  schemaVersion: number;
  supported: boolean;
  deviceId: string | null;
  records: number;
  oldestSeq: number | null;
  newestSeq: number | null;
  oldestTime: string | null;
  newestTime: string | null;
  gaps: Gap[];
  rides: number;
  outbox: number;
  freeDiskBytes: number | null;
}

export interface RecordRange {
  fromSeq?: number;
  toSeq?: number;
  fromMs?: number;
  toMs?: number;
  rideId?: number;
}

export class SpoolReader {
  readonly rides: RideStore;

  private constructor(
    readonly file: string,
    private readonly db: Database.Database,
  ) {
    this.rides = new RideStore(db);
  }

  static open(dataDir: string): SpoolReader {
    const file = join(dataDir, SPOOL_FILE);
    if (!existsSync(file)) throw new SpoolMissingError('spool_missing', `no spool at ${file}`);
    // SQLite loads only now, with a small page cache (sqlite-file.ts): the summary's count walks a whole
    // index and integrity() reads every page.
    const db = openSpoolFile(file, { readonly: true, fileMustExist: true });
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version < 2) {
      db.close();
      throw new SpoolMissingError(
        'spool_needs_migration',
        `${file} has spool schema ${version}; the agent migrates it to ${SCHEMA_VERSION} on its next start`,
      );
    }
    if (version > SCHEMA_VERSION) {
      db.close();
      throw new SpoolMissingError('spool_too_new', `${file} has spool schema ${version}, newer than this tool's ${SCHEMA_VERSION}`);
    }
    return new SpoolReader(file, db);
  }

  summary(): SpoolSummary {
    const db = this.db;
    // Each aggregate on its own: together SQLite computes them by reading every record (300 ms on four
    // days of records); apart, min() and max() are index lookups and count(*) walks the smallest index.
    const range = db
      .prepare(
        'SELECT (SELECT min(seq) FROM records) AS oldest, (SELECT max(seq) FROM records) AS newest, (SELECT count(*) FROM records) AS n',
      )
      .get() as {
      oldest: number | null;
      newest: number | null;
      n: number;
    };
    const wall = (seq: number | null): string | null => {
      if (seq === null) return null;
      const r = db.prepare('SELECT wall_ms FROM records WHERE seq = ?').get(seq) as { wall_ms: number } | undefined;
      return r ? new Date(r.wall_ms).toISOString() : null;
    };
    const gaps = (
      db.prepare('SELECT id, first_seq, last_seq, count, reason, at_ms FROM gaps ORDER BY first_seq').all() as Array<
        Record<string, number | string>
      >
    ).map((g) => ({
      id: g.id as number,
      firstSeq: g.first_seq as number,
      lastSeq: g.last_seq as number,
      count: g.count as number,
      reason: g.reason as Gap['reason'],
      atMs: g.at_ms as number,
    }));
    const meta = db.prepare("SELECT value FROM meta WHERE key = 'device_id'").get() as { value: string } | undefined;
    let bytes = 0;
    for (const s of ['', '-wal']) if (existsSync(this.file + s)) bytes += statSync(this.file + s).size;
    return {
      file: this.file,
      bytes,
      schemaVersion: db.pragma('user_version', { simple: true }) as number,
      supported: true,
      deviceId: meta?.value ?? null,
      records: range.n,
      oldestSeq: range.oldest,
      newestSeq: range.newest,
      oldestTime: wall(range.oldest),
      newestTime: wall(range.newest),
      gaps,
      rides: (db.prepare('SELECT count(*) AS n FROM rides').get() as { n: number }).n,
      outbox: (db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n,
      freeDiskBytes: null,
    };
  }

  integrity(): string {
    return this.db.pragma('quick_check', { simple: true }) as string;
  }

  count(range: RecordRange): number {
    const { where, args } = whereOf(range);
    return (this.db.prepare(`SELECT count(*) AS n FROM records ${where}`).get(...args) as { n: number }).n;
  }

  /** Records in sequence order, streamed (an export of a week of riding is millions of rows). */
  *records(range: RecordRange): Generator<ExportRecord> {
    const { where, args } = whereOf(range);
    const stmt = this.db.prepare(`SELECT ${ROW_COLUMNS.join(', ')} FROM records ${where} ORDER BY seq`).raw(true);
    const uuids = new Map<number, string | null>();
    for (const row of stmt.iterate(...args) as Iterable<Array<number | null>>) {
      const rideId = row[1] as number;
      if (!uuids.has(rideId)) uuids.set(rideId, this.rides.uuidOf(rideId));
      const rec: Record<string, unknown> = {
        seq: row[0],
        ride: uuids.get(rideId) ?? null,
        wallTime: new Date(row[3] as number).toISOString(),
        tMs: Math.round((row[2] as number) / 1000),
      };
      VALUE_COLUMNS.forEach((c, i) => {
        const v = row[4 + i];
        rec[c.field] = v === null ? null : v / c.scale;
      });
      rec.flags = row[4 + VALUE_COLUMNS.length];
      yield rec as unknown as ExportRecord;
    }
  }

  ride(idOrUuid: string): RideRow | null {
    return this.rides.get(idOrUuid) ?? (/^\d+$/.test(idOrUuid) ? this.rides.get(Number(idOrUuid)) : null);
  }

  close(): void {
    this.db.close();
  }
}

function whereOf(r: RecordRange): { where: string; args: number[] } {
  const c: string[] = [];
  const args: number[] = [];
  if (r.fromSeq !== undefined) {
    c.push('seq >= ?');
    args.push(r.fromSeq);
  }
  if (r.toSeq !== undefined) {
    c.push('seq <= ?');
    args.push(r.toSeq);
  }
  if (r.fromMs !== undefined) {
    c.push('wall_ms >= ?');
    args.push(r.fromMs);
  }
  if (r.toMs !== undefined) {
    c.push('wall_ms <= ?');
    args.push(r.toMs);
  }
  if (r.rideId !== undefined) {
    c.push('ride = ?');
    args.push(r.rideId);
  }
  return { where: c.length ? `WHERE ${c.join(' AND ')}` : '', args };
}
