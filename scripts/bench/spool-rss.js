#!/usr/bin/env node
// How much memory the spool holds as records pile up offline: `--hours` of
// 10 Hz records (default 3) appended and committed a second at a time, as
// fast as it goes, with nothing acknowledged (a bike without its broker).
// Prints one JSON line: RSS before and after, and the growth, MB; and the V8
// heap's share of it (garbage of the loop not yet collected), the rest being
// SQLite's page cache and the spool's buffers.
// Usage: node scripts/bench/spool-rss.js [--hours 3]   (needs `npm run build`)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Spool } from '../../dist/spool/spool.js';
import { LiveRecord } from '../../dist/metrics/record.js';
import { createLogger } from '../../dist/log/logger.js';
import { numberArg } from './args.js';

const hours = numberArg('--hours', 3);
const rssMB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
const dir = mkdtempSync(join(tmpdir(), 'bench-spool-rss-'));
const spool = Spool.open({
  dir,
  deviceId: 'bench-spool-rss',
  maxBytes: 1 << 30,
  synchronous: 'OFF', // the memory, not the disk, is measured
  memoryRecords: 36_000,
  log: createLogger('silent'),
});
const r = new LiveRecord();
const heapMB = () => process.memoryUsage().heapTotal / 1048576;
const before = rssMB();
const heapBefore = heapMB();
for (let s = 0; s < hours * 3600; s++) {
  for (let i = 0; i < 10; i++) {
    r.tUs += 100_000;
    r.powerW = 150 + (s % 50);
    r.cadenceRpm = 80 + i;
    spool.append(r, 0);
  }
  spool.flush();
}
const after = rssMB();
const heapAfter = heapMB();
const records = spool.stats().records;
spool.close();
rmSync(dir, { recursive: true, force: true });
const mb = (x) => Number(x.toFixed(1));
console.log(
  JSON.stringify({
    bench: 'spool-rss',
    hours,
    records,
    rssBeforeMB: mb(before),
    rssAfterMB: mb(after),
    growthMB: mb(after - before),
    v8HeapGrowthMB: mb(heapAfter - heapBefore),
    node: process.version,
  }),
);
