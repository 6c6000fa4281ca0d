/**
 * Spool schema and its forward-only migrations. `PRAGMA user_version` holds
 * the version of the file; each migration runs in one transaction with the
 * version bump, so a crash leaves the file at the old or the new version.
 *
 * Values are stored as scaled integers (see columns.ts): SQLite writes small
 * integers as 1-3 byte varints, a record takes about 30 bytes, and the packet
 * encoder delta-encodes the same integers.
 */
export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'records, gaps, rides, meta',
    sql: `
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE records (
        seq INTEGER PRIMARY KEY,     -- per-device sequence number, never reused
        ride INTEGER NOT NULL,       -- rides.id (0: no ride)
        t_us INTEGER NOT NULL,       -- engine time (board clock, unwrapped), microseconds
        wall_ms INTEGER NOT NULL,    -- tablet wall clock when the record was made
        cadence_drpm INTEGER,        -- NULL: unknown
        power_dw INTEGER,
        resistance_dpct INTEGER,
        flywheel_drpm INTEGER,
        speed_ckmh INTEGER,
        hr_bpm INTEGER,
        distance_dm INTEGER,
        energy_j INTEGER,
        flags INTEGER NOT NULL
      );
      CREATE INDEX records_by_ride ON records (ride);
      CREATE TABLE gaps (
        id INTEGER PRIMARY KEY,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        count INTEGER NOT NULL,
        reason TEXT NOT NULL,        -- evicted | memory_overflow
        at_ms INTEGER NOT NULL,
        reported INTEGER NOT NULL DEFAULT 0
      );
      CREATE TABLE rides (
        id INTEGER PRIMARY KEY,
        ride_uuid TEXT NOT NULL UNIQUE,
        member TEXT,                 -- pseudonymised member id, never the raw id
        class_id TEXT,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER
      );
    `,
  },
  {
    version: 2,
    description: 'ride summaries, outbox for ride and purge notices',
    sql: `
      ALTER TABLE rides ADD COLUMN started_by TEXT NOT NULL DEFAULT 'auto';  -- auto | api
      ALTER TABLE rides ADD COLUMN end_reason TEXT;                          -- api | idle | replaced | shutdown
      ALTER TABLE rides ADD COLUMN summary TEXT;                             -- JSON RideSummary, kept current while riding
      ALTER TABLE rides ADD COLUMN series BLOB;                              -- 1 Hz power, cadence, heart rate (float32 LE) for charts
      CREATE INDEX rides_by_member ON rides (member);
      -- Messages for the cloud that must survive a restart: ride summaries and
      -- purge notices. Deleted when the broker acknowledges them.
      CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,          -- topic suffix: ride | purge
        payload BLOB NOT NULL,       -- CBOR, firmware-protocol/packet.cddl
        created_ms INTEGER NOT NULL
      );
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;
