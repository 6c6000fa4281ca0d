#!/usr/bin/env node
// `npm run bench`: every benchmark in turn, each printing one JSON line.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// The core benchmarks run for both wire protocols; the drain benchmark does not touch the serial side.
const benches = [
  ['hotpath.js', '--protocol', 'fwp'],
  ['hotpath.js', '--protocol', 'peloton'],
  ['realtime.js', '--protocol', 'fwp'],
  ['realtime.js', '--protocol', 'peloton'],
  ['drain.js'],
  ['spool-rss.js'],
  ['cli.js'],
  ['backlog.js'],
  ['board-update.js'],
];
let failed = 0;
for (const [b, ...args] of benches) {
  const r = spawnSync(process.execPath, [fileURLToPath(new URL(b, import.meta.url)), ...args, ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  if (r.status !== 0) failed++;
}
process.exitCode = failed ? 1 : 0;
