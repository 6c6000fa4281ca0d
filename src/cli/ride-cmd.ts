/** `bike-telemetry ride list` and `ride chart RIDE --out file.svg`, from the spool file (agent running or not). */
import { writeFileSync } from 'node:fs';
import { loadConfig } from '../config/load.js';
import { rideChartSvg } from '../rides/chart-svg.js';
import { SpoolMissingError, SpoolReader } from '../spool/reader.js';
import { ExitCode } from './exit-codes.js';
import { duration, json, num, out, table } from './format.js';

function open(configFile: string | undefined, cmd: string): SpoolReader | null {
  const config = loadConfig(configFile);
  try {
    return SpoolReader.open(config.dataDir);
  } catch (err) {
    if (!(err instanceof SpoolMissingError)) throw err;
    process.stderr.write(`bike-telemetry ${cmd}: ${err.message}\n`);
    process.exitCode = ExitCode.NOT_FOUND;
    return null;
  }
}

export function rideListCommand(opts: { config?: string; json?: boolean; limit: number }): void {
  const reader = open(opts.config, 'ride list');
  if (!reader) return;
  try {
    const rides = reader.rides.list({ limit: opts.limit });
    if (opts.json) {
      json(rides.map((r) => ({ id: r.id, ...(r.summary ?? { ride: r.uuid }) })));
      return;
    }
    if (rides.length === 0) {
      out('No rides in the spool.');
      return;
    }
    out(
      table([
        ['#', 'RIDE', 'STARTED (UTC)', 'DURATION', 'KM', 'AVG W', 'BY', 'END'],
        ...rides.map((r) => [
          String(r.id),
          r.uuid,
          new Date(r.startedMs).toISOString().slice(0, 19).replace('T', ' '),
          r.summary ? duration(r.summary.durationS) : '–',
          r.summary ? num(r.summary.distanceM / 1000, 2) : '–',
          num(r.summary?.avgPowerW ?? null),
          r.startedBy,
          r.endReason ?? 'in progress',
        ]),
      ]),
    );
  } finally {
    reader.close();
  }
}

export function rideChartCommand(ride: string, opts: { config?: string; out: string }): void {
  const reader = open(opts.config, 'ride chart');
  if (!reader) return;
  try {
    const row = ride === 'last' ? (reader.rides.list({ limit: 1 })[0] ?? null) : reader.ride(ride);
    if (!row || !row.summary) {
      process.stderr.write(`bike-telemetry ride chart: no ride ${ride} in the spool (see: bike-telemetry ride list)\n`);
      process.exitCode = ExitCode.NOT_FOUND;
      return;
    }
    const series = reader.rides.series(row.id);
    if (!series) {
      process.stderr.write(`bike-telemetry ride chart: ride ${row.uuid} has no stored series (only the newest rides keep theirs)\n`);
      process.exitCode = ExitCode.NOT_FOUND;
      return;
    }
    writeFileSync(opts.out, rideChartSvg(row.summary, series));
    out(`${opts.out}: ride ${row.uuid}, ${duration(row.summary.durationS)}, ${series.powerW.length} points`);
  } finally {
    reader.close();
  }
}
