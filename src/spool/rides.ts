/**
 * Rides and their summaries, in the spool file beside the records they
 * label. A ride row exists from its first record on and is updated while it
 * runs, so a crash mid-ride still leaves a summary; the next start closes it.
 */
import type Database from 'better-sqlite3';
import type { RideSummary } from '../contracts/health.js';

export type RideStartedBy = RideSummary['startedBy'];
export type RideEndReason = NonNullable<RideSummary['endReason']>;

export interface RideRow {
  id: number;
  uuid: string;
  member: string | null;
  classId: string | null;
  startedMs: number;
  endedMs: number | null;
  startedBy: RideStartedBy;
  endReason: RideEndReason | null;
  summary: RideSummary | null;
}

interface RawRide {
  id: number;
  ride_uuid: string;
  member: string | null;
  class_id: string | null;
  started_ms: number;
  ended_ms: number | null;
  started_by: RideStartedBy;
  end_reason: RideEndReason | null;
  summary: string | null;
}

const toRow = (r: RawRide): RideRow => ({
  id: r.id,
  uuid: r.ride_uuid,
  member: r.member,
  classId: r.class_id,
  startedMs: r.started_ms,
  endedMs: r.ended_ms,
  startedBy: r.started_by,
  endReason: r.end_reason,
  summary: r.summary ? (JSON.parse(r.summary) as RideSummary) : null,
});

export interface PurgedRide {
  ride: string;
  firstSeq: number | null;
  lastSeq: number | null;
}

export interface PurgeResult {
  rides: PurgedRide[];
  records: number;
}

export interface ListRidesQuery {
  limit: number;
  /** Only rides started before this wall time (ms), for paging back. */
  beforeMs?: number;
  member?: string;
}

/** Rides whose 1 Hz series (for charts) is kept; about 21 kB per 30-minute ride. */
export const SERIES_KEPT = 200;

const COLS = 'id, ride_uuid, member, class_id, started_ms, ended_ms, started_by, end_reason, summary';

export class RideStore {
  private readonly insertRide: Database.Statement;
  private readonly updateSummary: Database.Statement;
  private readonly endRide: Database.Statement;
  private readonly byId: Database.Statement;
  private readonly byUuid: Database.Statement;
  private readonly uuidCache = new Map<number, string>();

  constructor(private readonly db: Database.Database) {
    this.insertRide = db.prepare('INSERT INTO rides (ride_uuid, member, class_id, started_ms, started_by) VALUES (?, ?, ?, ?, ?)');
    this.updateSummary = db.prepare('UPDATE rides SET summary = ?, series = ? WHERE id = ?');
    this.endRide = db.prepare('UPDATE rides SET ended_ms = ?, end_reason = ?, summary = ?, series = ? WHERE id = ?');
    this.byId = db.prepare(`SELECT ${COLS} FROM rides WHERE id = ?`);
    this.byUuid = db.prepare(`SELECT ${COLS} FROM rides WHERE ride_uuid = ?`);
  }

  create(uuid: string, member: string | null, classId: string | null, startedMs: number, startedBy: RideStartedBy): number {
    const id = Number(this.insertRide.run(uuid, member, classId, startedMs, startedBy).lastInsertRowid);
    this.uuidCache.set(id, uuid);
    return id;
  }

  update(id: number, summary: RideSummary, series: Buffer): void {
    this.updateSummary.run(JSON.stringify(summary), series, id);
  }

  /** End a ride; only the newest SERIES_KEPT rides keep their 1 Hz series (the summaries stay). */
  end(id: number, endedMs: number, reason: RideEndReason, summary: RideSummary, series: Buffer): void {
    this.db.transaction(() => {
      this.endRide.run(endedMs, reason, JSON.stringify(summary), series, id);
      this.db
        .prepare(
          'UPDATE rides SET series = NULL WHERE series IS NOT NULL AND id <= (SELECT id FROM rides ORDER BY id DESC LIMIT 1 OFFSET ?)',
        )
        .run(SERIES_KEPT);
    })();
  }

  /** A ride's 1 Hz power, cadence and heart rate (NaN: unknown), or null when not kept. */
  series(id: number): { powerW: Float32Array; cadenceRpm: Float32Array; hrBpm: Float32Array } | null {
    const r = this.db.prepare('SELECT series FROM rides WHERE id = ?').get(id) as { series: Buffer | null } | undefined;
    if (!r?.series || r.series.length % 12 !== 0) return null;
    const n = r.series.length / 12;
    const all = new Float32Array(n * 3);
    for (let i = 0; i < n * 3; i++) all[i] = r.series.readFloatLE(i * 4);
    return { powerW: all.subarray(0, n), cadenceRpm: all.subarray(n, 2 * n), hrBpm: all.subarray(2 * n) };
  }

  get(idOrUuid: number | string): RideRow | null {
    const r = (typeof idOrUuid === 'number' ? this.byId.get(idOrUuid) : this.byUuid.get(idOrUuid)) as RawRide | undefined;
    return r ? toRow(r) : null;
  }

  /** The ride id the cloud knows a spool ride by (its uuid); null for ride 0 or a purged ride. */
  uuidOf(id: number): string | null {
    if (id === 0) return null;
    const cached = this.uuidCache.get(id);
    if (cached) return cached;
    const r = this.get(id);
    if (r) this.uuidCache.set(id, r.uuid);
    return r?.uuid ?? null;
  }

  list(q: ListRidesQuery): RideRow[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.beforeMs !== undefined) {
      where.push('started_ms < ?');
      args.push(q.beforeMs);
    }
    if (q.member !== undefined) {
      where.push('member = ?');
      args.push(q.member);
    }
    const sql = `SELECT ${COLS} FROM rides ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY started_ms DESC, id DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...args, q.limit) as RawRide[]).map(toRow);
  }

  /** Rides a crash or power cut left open: ended now with reason `shutdown`, at their last summary's time. */
  closeDangling(): RideRow[] {
    const open = (this.db.prepare(`SELECT ${COLS} FROM rides WHERE ended_ms IS NULL`).all() as RawRide[]).map(toRow);
    for (const r of open) {
      const s = r.summary;
      const endedMs = s ? Date.parse(s.startedAt) + Math.round(s.durationS * 1000) : r.startedMs;
      const summary: RideSummary | null = s ? { ...s, endedAt: new Date(endedMs).toISOString(), endReason: 'shutdown' } : null;
      this.db
        .prepare('UPDATE rides SET ended_ms = ?, end_reason = ?, summary = ? WHERE id = ?')
        .run(endedMs, 'shutdown', summary ? JSON.stringify(summary) : null, r.id);
      r.endedMs = endedMs;
      r.endReason = 'shutdown';
      r.summary = summary;
    }
    return open;
  }

  /**
   * Delete every ride of `member` and every record of those rides, in one
   * transaction. Returns what was deleted, for the purge notice to the cloud
   * (which deletes what it already has by ride id).
   */
  purgeMember(member: string): PurgeResult {
    return this.db.transaction((): PurgeResult => {
      const rides = (this.db.prepare(`SELECT ${COLS} FROM rides WHERE member = ?`).all(member) as RawRide[]).map(toRow);
      let records = 0;
      const purged: PurgedRide[] = [];
      const delRecords = this.db.prepare('DELETE FROM records WHERE ride = ?');
      const delRide = this.db.prepare('DELETE FROM rides WHERE id = ?');
      for (const r of rides) {
        records += delRecords.run(r.id).changes;
        delRide.run(r.id);
        this.uuidCache.delete(r.id);
        purged.push({ ride: r.uuid, firstSeq: r.summary?.firstSeq ?? null, lastSeq: r.summary?.lastSeq ?? null });
      }
      return { rides: purged, records };
    })();
  }
}

export interface OutboxMessage {
  id: number;
  kind: 'ride' | 'purge';
  payload: Buffer;
  createdMs: number;
}

/** Messages for the cloud that must survive a restart; deleted on the broker's acknowledgement. */
export class Outbox {
  private readonly insert: Database.Statement;
  private readonly remove: Database.Statement;
  private readonly count: Database.Statement;
  private readonly oldestStmt: Database.Statement;
  /**
   * Messages waiting, as this process counts them (never fewer than there
   * are): the uploader asks for the oldest every second, and an empty outbox,
   * the usual case, is answered without SQLite.
   */
  private waiting: number;

  constructor(db: Database.Database) {
    this.insert = db.prepare('INSERT INTO outbox (kind, payload, created_ms) VALUES (?, ?, ?)');
    // LIMIT in the text: a bound LIMIT recompiles the statement at every call (see Spool.read).
    this.oldestStmt = db.prepare('SELECT id, kind, payload, created_ms FROM outbox ORDER BY id LIMIT 1');
    this.remove = db.prepare('DELETE FROM outbox WHERE id = ?');
    this.count = db.prepare('SELECT count(*) AS n FROM outbox');
    this.waiting = this.size();
  }

  add(kind: OutboxMessage['kind'], payload: Buffer): number {
    const id = Number(this.insert.run(kind, payload, Date.now()).lastInsertRowid);
    this.waiting++;
    return id;
  }

  /** The oldest message waiting, or null. */
  oldest(): OutboxMessage | null {
    if (this.waiting === 0) return null;
    const m = this.oldestStmt.get() as { id: number; kind: OutboxMessage['kind']; payload: Buffer; created_ms: number } | undefined;
    // An add rolled back with its transaction counted one too many: the table is the truth.
    if (!m) {
      this.waiting = 0;
      return null;
    }
    return { id: m.id, kind: m.kind, payload: m.payload, createdMs: m.created_ms };
  }

  delete(id: number): void {
    if (this.remove.run(id).changes > 0) this.waiting--;
  }

  size(): number {
    return (this.count.get() as { n: number }).n;
  }
}
