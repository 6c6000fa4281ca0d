/**
 * Opens the spool's SQLite file, for the agent's writer (spool.ts) and the
 * CLI's reader (reader.ts), with SQLite's page cache capped at 512 KiB before
 * anything reads the file.
 *
 * better-sqlite3 builds SQLite with a 16 MB default cache
 * (SQLITE_DEFAULT_CACHE_SIZE=-16000). The agent's commit and the uploader's
 * reads touch the few pages at the ends of the records table, so the default
 * only filled over hours offline (three hours of records spooled: RSS +9.3 MB
 * with it, +5.2 MB with this cap); but the integrity check at the agent's
 * start, the CLI's count and selftest's integrity check read every page, and on a spool of days of records
 * (200 MB) filled all of it: peak RSS at the agent's start 76 MB with the
 * default, 59.6 MB with this (docs/performance.md).
 */
import type Database from 'better-sqlite3';
import { requireCjs } from '../util/require-cjs.js';

const PAGE_CACHE_KIB = 512;

/** better-sqlite3 is required at the first open: a command that finds no spool never loads SQLite. */
export function openSpoolFile(file: string, options: Database.Options): Database.Database {
  const SqliteDatabase = requireCjs('better-sqlite3') as typeof Database;
  const db = new SqliteDatabase(file, options);
  try {
    db.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}
