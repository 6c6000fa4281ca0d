/**
 * `bike-telemetry spool` and `spool export`: read the spool file directly
 * (read-only), so they work whether or not the agent is running.
 */
import { AgentError } from '../util/errors.js';
import { createWriteStream, statfsSync, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { loadConfig } from '../config/load.js';
import { EXPORT_FIELDS, SpoolMissingError, SpoolReader, type RecordRange } from '../spool/reader.js';
import { ExitCode } from './exit-codes.js';
import { bytes, json, num, out, table } from './format.js';

export interface SpoolOptions {
  config?: string;
  json?: boolean;
}

function openReader(config: ReturnType<typeof loadConfig>): SpoolReader | null {
  try {
    return SpoolReader.open(config.dataDir);
  } catch (err) {
    if (err instanceof SpoolMissingError) {
      process.stderr.write(`bike-telemetry spool: ${err.message}\n`);
      process.exitCode = ExitCode.NOT_FOUND;
      return null;
    }
    throw err;
  }
}

export function spoolCommand(opts: SpoolOptions): void {
  const config = loadConfig(opts.config);
  const reader = openReader(config);
  if (!reader) return;
  try {
    const s = reader.summary();
    try {
      const fs = statfsSync(config.dataDir);
      s.freeDiskBytes = fs.bavail * fs.bsize;
    } catch {
      s.freeDiskBytes = null;
    }
    if (opts.json) {
      json({ ...s, maxBytes: config.spool.maxBytes });
      return;
    }
    out(
      table([
        ['File', `${s.file} (schema ${s.schemaVersion}, device ${s.deviceId ?? '–'})`],
        ['Size', `${bytes(s.bytes)} of ${bytes(config.spool.maxBytes)} cap · ${bytes(s.freeDiskBytes)} free on disk`],
        ['Backlog', `${num(s.records)} records not yet acknowledged by the broker`],
        ['Oldest', s.oldestSeq === null ? '–' : `seq ${s.oldestSeq} at ${s.oldestTime}`],
        ['Newest', s.newestSeq === null ? '–' : `seq ${s.newestSeq} at ${s.newestTime}`],
        ['Rides', `${s.rides} · ${s.outbox} notices waiting for the broker`],
        ['Gaps', s.gaps.length === 0 ? 'none' : `${s.gaps.length} (${num(s.gaps.reduce((a, g) => a + g.count, 0))} records lost)`],
      ]),
    );
    for (const g of s.gaps)
      out(`  seq ${g.firstSeq}–${g.lastSeq}: ${num(g.count)} records ${g.reason} at ${new Date(g.atMs).toISOString()}`);
  } finally {
    reader.close();
  }
}

export interface ExportOptions {
  config?: string;
  format: 'csv' | 'json';
  from?: string;
  to?: string;
  ride?: string;
  out?: string;
}

/** --from/--to: a sequence number, or a date and time. */
export function parseBound(v: string | undefined, name: string): { seq?: number; ms?: number } {
  if (v === undefined) return {};
  if (/^\d+$/.test(v)) return { seq: Number(v) };
  const ms = Date.parse(v);
  if (Number.isNaN(ms)) throw new BoundError(`${name} must be a sequence number or a date (ISO 8601), got "${v}"`);
  return { ms };
}

export class BoundError extends AgentError<'bad_range'> {
  constructor(message: string) {
    super('bad_range', message);
  }
}

const csvCell = (v: unknown): string => {
  if (v === null || v === undefined) return '';
  const s =
    typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' ? String(v) : JSON.stringify(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

function drawProgress(n: number, total: number): void {
  const frac = total ? Math.min(1, n / total) : 1;
  const width = 30;
  const filled = Math.round(frac * width);
  process.stderr.write(`\rexporting [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${num(n)}/${num(total)} records`);
}

export async function exportCommand(opts: ExportOptions): Promise<void> {
  const config = loadConfig(opts.config);
  let from: ReturnType<typeof parseBound>;
  let to: ReturnType<typeof parseBound>;
  try {
    from = parseBound(opts.from, '--from');
    to = parseBound(opts.to, '--to');
  } catch (err) {
    process.stderr.write(`bike-telemetry spool export: ${(err as Error).message}\n`);
    process.exitCode = ExitCode.USAGE;
    return;
  }
  const reader = openReader(config);
  if (!reader) return;
  try {
    const range: RecordRange = { fromSeq: from.seq, fromMs: from.ms, toSeq: to.seq, toMs: to.ms };
    if (opts.ride) {
      const ride = reader.ride(opts.ride);
      if (!ride) {
        process.stderr.write(`bike-telemetry spool export: no ride ${opts.ride} in the spool\n`);
        process.exitCode = ExitCode.NOT_FOUND;
        return;
      }
      range.rideId = ride.id;
    }
    const total = reader.count(range);
    const sink: WriteStream | NodeJS.WriteStream = opts.out ? createWriteStream(opts.out) : process.stdout;
    const showProgress = process.stderr.isTTY === true && (opts.out !== undefined || process.stdout.isTTY !== true);
    const write = async (s: string): Promise<void> => {
      if (!sink.write(s)) await once(sink, 'drain');
    };
    if (opts.format === 'csv') await write(`${EXPORT_FIELDS.join(',')}\n`);
    let n = 0;
    let lastDraw = 0;
    for (const rec of reader.records(range)) {
      const row = rec as unknown as Record<string, unknown>;
      await write(opts.format === 'csv' ? `${EXPORT_FIELDS.map((f) => csvCell(row[f])).join(',')}\n` : `${JSON.stringify(rec)}\n`);
      n++;
      if (showProgress && Date.now() - lastDraw > 100) {
        lastDraw = Date.now();
        drawProgress(n, total);
      }
    }
    if (showProgress) {
      drawProgress(n, total);
      process.stderr.write('\n');
    }
    if (opts.out) {
      (sink as WriteStream).end();
      await once(sink, 'finish');
      process.stderr.write(`${num(n)} records written to ${opts.out}\n`);
    }
  } finally {
    reader.close();
  }
}
