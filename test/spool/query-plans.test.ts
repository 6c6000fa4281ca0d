/**
 * What the spool's statements cost as the spool grows: read through SQLite's
 * own query plans, not timed. A bike offline for days holds millions of
 * records, and `health` (every `status`, stats line and watchdog ping) reads
 * the spool's range; a statement that reads every record there stalls the
 * agent for as long as the file is big (400 ms on 200 MB, before this test).
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { LiveRecord } from '../../src/metrics/record.js';
import { SpoolReader } from '../../src/spool/reader.js';
import { SPOOL_FILE, Spool } from '../../src/spool/spool.js';
import { tempDir } from '../helpers/agent.js';

type Prepare = Database.Database['prepare'];
type Pragma = Database.Database['pragma'];
// eslint-disable-next-line @typescript-eslint/unbound-method -- put back on the prototype; only called with .call(db)
const original: Prepare = Database.prototype.prepare;
// eslint-disable-next-line @typescript-eslint/unbound-method -- put back on the prototype; only called with .call(db)
const originalPragma: Pragma = Database.prototype.pragma;
afterEach(() => {
  Database.prototype.prepare = original;
  Database.prototype.pragma = originalPragma;
});

/** Every SQL text prepared on any connection while `fn` runs (the product loads the same better-sqlite3). */
function preparedDuring(fn: () => void): string[] {
  const seen: string[] = [];
  Database.prototype.prepare = function (this: Database.Database, sql: string) {
    seen.push(sql);
    return original.call(this, sql);
  } as Prepare;
  try {
    fn();
  } finally {
    Database.prototype.prepare = original;
  }
  return seen;
}

/** How SQLite would read the records table for `sql`: 'SCAN' (every record) or 'SEARCH' (through the key). */
function recordsAccess(db: Database.Database, sql: string): string[] {
  const params = (sql.match(/\?/g) ?? []).map(() => 1);
  const plan = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{ detail: string }>;
  return plan.map((p) => p.detail).filter((d) => /^(SCAN|SEARCH) records\b/.test(d));
}

function openSpool(dir: string): Spool {
  return Spool.open({
    dir,
    deviceId: 'bike-plans',
    maxBytes: 64 << 20,
    synchronous: 'NORMAL',
    memoryRecords: 1000,
    log: createLogger('silent'),
  });
}

function fill(s: Spool, n: number): void {
  const r = new LiveRecord();
  for (let i = 0; i < n; i++) {
    r.tUs += 100_000;
    r.powerW = 150 + (i % 50);
    s.append(r, 0);
  }
  s.flush();
}

describe('spool statements read a few pages, whatever the backlog', () => {
  it("the agent's spool: only the record count at open reads the whole table; stats, reads and acks search the key", () => {
    const dir = tempDir('spool-plans-');
    let spool!: Spool;
    const sql = preparedDuring(() => {
      spool = openSpool(dir);
      fill(spool, 500);
      const rows = spool.read(0, 10);
      spool.ack(rows[0][0], rows[9][0]);
      spool.stats();
      spool.applyAcks();
      spool.stats();
    });
    const db = new Database(join(dir, SPOOL_FILE), { readonly: true });
    try {
      const reading = sql.filter((s) => /^\s*SELECT\b/i.test(s) && /\brecords\b/.test(s));
      expect(reading.length).toBeGreaterThan(3);
      const scans = reading.filter((s) => recordsAccess(db, s).some((d) => d.startsWith('SCAN')));
      expect(scans).toEqual(['SELECT count(*) AS n FROM records']);
      // The range health reads: an index lookup at each end.
      const range = reading.find((s) => /min\(seq\)/.test(s) && /max\(seq\)/.test(s));
      expect(range && recordsAccess(db, range)).toEqual(['SEARCH records', 'SEARCH records']);
    } finally {
      db.close();
      spool.close();
    }
  });

  it("the CLI's summary: the range at each end of the key, the count by SQLite's count", () => {
    const dir = tempDir('spool-plans-reader-');
    const spool = openSpool(dir);
    fill(spool, 500);
    spool.close();
    const reader = SpoolReader.open(dir);
    let summary!: ReturnType<SpoolReader['summary']>;
    const sql = preparedDuring(() => (summary = reader.summary()));
    reader.close();
    expect(summary).toMatchObject({ records: 500, oldestSeq: 1, newestSeq: 500 });
    const db = new Database(join(dir, SPOOL_FILE), { readonly: true });
    try {
      const reading = sql.filter((s) => /\brecords\b/.test(s));
      const range = reading.find((s) => /min\(seq\)/.test(s));
      // min() and max() looked up at the ends of the key; count(*) walks the smallest index (SQLite keeps no count).
      expect(range && recordsAccess(db, range)).toEqual([
        'SEARCH records',
        'SEARCH records',
        expect.stringMatching(/^SCAN records USING COVERING INDEX/),
      ]);
      const otherScans = reading.filter((s) => s !== range).flatMap((s) => recordsAccess(db, s).filter((d) => d.startsWith('SCAN')));
      expect(otherScans).toEqual([]);
    } finally {
      db.close();
    }
  });

  it('the page cache is capped before quick_check reads every page at open (the 16 MB default filled on a large spool)', () => {
    const dir = tempDir('spool-plans-cache-');
    const pragmas: string[] = [];
    Database.prototype.pragma = function (this: Database.Database, source: string, options?: Database.PragmaOptions) {
      pragmas.push(`${source} (cache ${String(originalPragma.call(this, 'cache_size', { simple: true }))})`);
      return originalPragma.call(this, source, options);
    };
    const spool = openSpool(dir);
    fill(spool, 10);
    spool.close();
    Database.prototype.pragma = originalPragma;
    expect(pragmas.filter((p) => p.startsWith('quick_check'))).toEqual(['quick_check (cache -512)']);
  });
});
