#!/usr/bin/env node
// 24 hours of 10 Hz records (864,000) spooled while offline, then drained to a
// local Mosquitto (started here on a free port) with no rate limit, and again
// with a rate limit. Prints one JSON line: records/s, bytes/record, and the
// limited run's rate against its limit.
// Usage: node scripts/bench/drain.js [--records 864000] [--limit-bytes-per-s 50000]
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../dist/log/logger.js';
import { LiveRecord } from '../../dist/metrics/record.js';
import { parseConfig } from '../../dist/config/load.js';
import { spoolOptions, uploaderOptions } from '../../dist/pipeline/delivery.js';
import { Spool } from '../../dist/spool/spool.js';
import { Uploader } from '../../dist/upload/uploader.js';
import { startBroker } from './broker.js';
import { numberArg } from './args.js';

const total = numberArg('--records', 864_000);
const limit = numberArg('--limit-bytes-per-s', 50_000);
const log = createLogger('silent');

const broker = await startBroker(['max_inflight_messages 64']);
const dir = mkdtempSync(join(tmpdir(), 'bench-drain-'));

/** The bike's configuration, as an agent would be configured (the spool and uploader are built from it, pipeline/delivery.ts). */
const benchConfig = (name, rateBytesPerS = 0) =>
  parseConfig({
    device: { id: 'bench-bike' },
    dataDir: join(dir, name),
    spool: { maxBytes: 1 << 30, synchronous: 'NORMAL', memoryRecords: 10_001 },
    mqtt: {
      url: broker.url,
      topicPrefix: 'bike',
      sessionExpirySec: 3600,
      keepaliveSec: 60,
      maxInflight: 32,
      maxRecordsPerPacket: 6000,
      maxPacketBytes: 256 * 1024,
      rateBytesPerS,
      backoffBaseMs: 100,
      backoffCapMs: 1000,
      deflate: true,
      pollMs: 50,
    },
  });

/** A spool holding `n` records of a plausible ride, as after a day offline. */
function filledSpool(name, n) {
  const spool = Spool.open(spoolOptions(benchConfig(name), log));
  const r = new LiveRecord();
  // Sensor-like noise (seeded) so deflate sees realistic entropy, not a repeating pattern.
  let x = 12345;
  const noise = () => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5;
  for (let i = 0; i < n; i++) {
    r.tUs += 100_000;
    const phase = (i % 6000) / 6000;
    r.cadenceRpm = 75 + 20 * Math.sin(phase * 2 * Math.PI) + 2 * noise();
    r.powerW = 180 + 80 * Math.sin(phase * 2 * Math.PI) + 12 * noise();
    r.resistancePct = 40 + 15 * Math.sin(phase * 4 * Math.PI);
    r.flywheelRpm = r.cadenceRpm * 3.2;
    r.speedKmh = 30 + 5 * Math.sin(phase * 2 * Math.PI);
    r.hrBpm = 130 + Math.round(20 * Math.sin(phase * 2 * Math.PI));
    r.distanceM += r.speedKmh / 36;
    r.energyKj += r.powerW / 10000;
    spool.append(r, 0);
    if (i % 10_000 === 9_999) spool.flush();
  }
  spool.flush();
  return spool;
}

/**
 * Drain `spool` (the bike `name`'s); with `window` = [from, to] seconds, also report the upload
 * rate measured between those times (after the bucket's initial burst).
 */
async function drain(name, spool, rateBytesPerS, maxSeconds, window = null) {
  const u = new Uploader(spool, uploaderOptions(benchConfig(name, rateBytesPerS), log, Infinity, 'bench'));
  const start = spool.stats().records;
  u.start();
  while (u.state !== 'connected') await sleep(5);
  const t0 = performance.now();
  const bytes0 = u.counters.bytesSent;
  let w0 = null;
  let w1 = null;
  while (spool.stats().records > 0 && performance.now() - t0 < maxSeconds * 1000) {
    await sleep(20);
    const t = (performance.now() - t0) / 1000;
    if (window && w0 === null && t >= window[0]) w0 = { t, bytes: u.counters.bytesSent };
    if (window && w1 === null && t >= window[1]) w1 = { t, bytes: u.counters.bytesSent };
  }
  const seconds = (performance.now() - t0) / 1000;
  const acked = start - spool.stats().records;
  const bytes = u.counters.bytesSent - bytes0;
  await u.stop();
  const windowRate = w0 && w1 ? (w1.bytes - w0.bytes) / (w1.t - w0.t) : null;
  return { seconds, acked, bytes, windowRate };
}

const full = filledSpool('full', total);
const a = await drain('full', full, 0, 600);
full.close();
// The limited run: the rate between 2 s and 12 s, after the one-second burst the bucket allows.
const limited = filledSpool('limited', Math.min(total, 300_000));
const b = await drain('limited', limited, limit, 12.5, [2, 12]);
limited.close();

broker.stop();
console.log(
  JSON.stringify({
    bench: 'drain',
    records: total,
    drained: a.acked,
    seconds: Number(a.seconds.toFixed(2)),
    recordsPerS: Math.round(a.acked / a.seconds),
    bytesPerRecord: Number((a.bytes / a.acked).toFixed(2)),
    limitBytesPerS: limit,
    limitedBytesPerS: b.windowRate === null ? null : Math.round(b.windowRate),
    limitedRatio: b.windowRate === null ? null : Number((b.windowRate / limit).toFixed(3)),
    node: process.version,
  }),
);
