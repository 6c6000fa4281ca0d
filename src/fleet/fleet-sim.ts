/**
 * The fleet simulator: N bikes, each with its own device id, spool (a real
 * SQLite file) and MQTT session (the real Uploader), riding at 10 Hz, spread
 * over worker processes (one per core by default). The coordinator runs the
 * scenario (steady riding; a broker outage then recovery; every bike starting
 * at once; a fleet limit set mid-run), counts with the reference consumer, and
 * reports every second: connections opened, packets and records acknowledged,
 * backlog remaining; at the end, records made vs acknowledged vs received vs lost.
 */
import { seededRandom } from '../sim/rng.js';
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type * as Mqtt from 'mqtt';
import { requireCjs } from '../util/require-cjs.js';
import { ReferenceConsumer } from '../cloud/consumer.js';
import { createLogger } from '../log/logger.js';
import { LiveRecord } from '../metrics/record.js';
import { parseConfig } from '../config/load.js';
import { createDelivery } from '../pipeline/delivery.js';
import type { Spool } from '../spool/spool.js';
import type { Uploader } from '../upload/uploader.js';
import { PrivateBroker } from './broker.js';

const mqtt = requireCjs('mqtt') as typeof Mqtt;

export interface WorkerTick {
  worker: number;
  made: number;
  connects: number;
  connectFailures: number;
  packetsAcked: number;
  recordsAcked: number;
  backlog: number;
  bytesSent: number;
  limit: number | null;
}

export interface WorkerConfig {
  worker: number;
  bikes: number;
  firstBike: number;
  url: string;
  dir: string;
  backoffBaseMs: number;
  backoffCapMs: number;
  rateBytesPerS: number;
  /** Spread the bikes' first connections over this long (0: all at once). */
  startSpreadMs: number;
}

/** One worker process: its share of the bikes. Reports a WorkerTick to the parent every second. */
export function runWorker(cfg: WorkerConfig, send: (t: WorkerTick) => void): { stopRiding: () => void; stop: () => Promise<void> } {
  const log = createLogger('silent');
  const bikes: Array<{ spool: Spool; uploader: Uploader }> = [];
  mkdirSync(cfg.dir, { recursive: true });
  for (let i = 0; i < cfg.bikes; i++) {
    const id = `sim-${String(cfg.firstBike + i).padStart(5, '0')}`;
    // Each bike configured as an agent is (pipeline/delivery.ts), with what a fleet of them on one machine needs.
    const config = parseConfig({
      device: { id },
      dataDir: join(cfg.dir, id),
      spool: { maxBytes: 64 << 20, synchronous: 'NORMAL', memoryRecords: 36_000 },
      mqtt: {
        url: cfg.url,
        topicPrefix: 'bike',
        sessionExpirySec: 3600,
        keepaliveSec: 60,
        maxInflight: 4,
        maxRecordsPerPacket: 600,
        maxPacketBytes: 256 * 1024,
        rateBytesPerS: cfg.rateBytesPerS,
        backoffBaseMs: cfg.backoffBaseMs,
        backoffCapMs: cfg.backoffCapMs,
        deflate: true,
        pollMs: 1000,
      },
    });
    const { spool, uploader } = createDelivery(config, log, {
      // Seeded per bike: the fleet's reconnection spread is the same on every run (a bounded test must not be a lottery).
      random: seededRandom(0x5eed + cfg.firstBike + i),
      sequenceBlock: 100_000,
      agentVersion: 'fleet-sim',
    });
    bikes.push({ spool, uploader });
  }
  // Starting: all at once (power returns to a building) or spread out.
  bikes.forEach((b, i) => setTimeout(() => b.uploader.start(), cfg.startSpreadMs > 0 ? (i / bikes.length) * cfg.startSpreadMs : 0));
  const r = new LiveRecord();
  let made = 0;
  let t = 0;
  // 10 Hz riding for every bike: a record each per tick, committed once a second.
  const ride = setInterval(() => {
    t += 100_000;
    r.tUs = t;
    for (let i = 0; i < bikes.length; i++) {
      r.cadenceRpm = 70 + ((t / 100_000 + i) % 30);
      r.powerW = 120 + ((t / 100_000 + 7 * i) % 90);
      r.hrBpm = 110 + (i % 50);
      r.distanceM = t / 1e5;
      bikes[i].spool.append(r, 0);
    }
    made += bikes.length;
  }, 100);
  const report = setInterval(() => {
    let connects = 0;
    let failures = 0;
    let packets = 0;
    let records = 0;
    let backlog = 0;
    let bytes = 0;
    for (const b of bikes) {
      b.spool.flush();
      const c = b.uploader.counters;
      connects += c.connects;
      failures += c.connectFailures;
      packets += c.packetsAcked;
      records += c.recordsAcked;
      bytes += c.bytesSent;
      backlog += b.spool.stats().records;
    }
    send({
      worker: cfg.worker,
      made,
      connects,
      connectFailures: failures,
      packetsAcked: packets,
      recordsAcked: records,
      backlog,
      bytesSent: bytes,
      limit: bikes[0]?.uploader.stats().limits.uploadBytesPerS ?? null,
    });
  }, 1000);
  return {
    stopRiding: () => clearInterval(ride),
    stop: async () => {
      clearInterval(ride);
      clearInterval(report);
      await Promise.all(bikes.map((b) => b.uploader.stop(1000)));
      for (const b of bikes) b.spool.close();
    },
  };
}

export interface FleetOptions {
  bikes: number;
  workers: number;
  seconds: number;
  scenario: 'steady' | 'outage' | 'cold-start';
  /** Outage: broker down this long, starting at outageAtS. */
  outageS: number;
  outageAtS: number;
  /** Set a fleet upload limit (bytes/s per bike) at this second; null: none. */
  limitAtS: number | null;
  limitBytesPerS: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  dir: string;
  /** Wait at most this long at the end for the backlog to drain. */
  drainS: number;
  onSecond: (line: Record<string, unknown>) => void;
}

export interface FleetResult {
  bikes: number;
  made: number;
  acknowledged: number;
  received: number;
  lost: number;
  duplicatesAreWholePackets: boolean;
  invalid: number;
  peakConnectsPerS: number;
  reconnectHistogram: number[];
  aggregateBytesPerSAfterLimit: number | null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runFleet(o: FleetOptions, binPath: string): Promise<FleetResult> {
  const broker = await PrivateBroker.start();
  const consumer = await ReferenceConsumer.connect({ url: broker.url, clientId: 'fleet-sim-consumer' });
  const ticks = new Map<number, WorkerTick>();
  const workers: ChildProcess[] = [];
  const per = Math.ceil(o.bikes / o.workers);
  for (let w = 0; w < o.workers; w++) {
    const n = Math.min(per, o.bikes - w * per);
    if (n <= 0) break;
    const cfg: WorkerConfig = {
      worker: w,
      bikes: n,
      firstBike: w * per,
      url: broker.url,
      dir: join(o.dir, `w${w}`),
      backoffBaseMs: o.backoffBaseMs,
      backoffCapMs: o.backoffCapMs,
      rateBytesPerS: 0,
      startSpreadMs: o.scenario === 'cold-start' ? 0 : 5000,
    };
    const child = fork(binPath, ['fleet-sim', '--worker', JSON.stringify(cfg)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    child.on('message', (m) => ticks.set(w, m as WorkerTick));
    workers.push(child);
  }
  const sum = (k: keyof WorkerTick): number => [...ticks.values()].reduce((a, t) => a + ((t[k] as number) ?? 0), 0);
  const histogram: number[] = [];
  let lastConnects = 0;
  let lastBytes = 0;
  let brokerDown = false;
  const bytesAfterLimit: number[] = [];
  let limitSet = false;
  let cloud: Mqtt.MqttClient | null = null;
  let lastProgress = -1;
  let lastProgressAt = 0;
  for (let s = 1; s <= o.seconds + o.drainS; s++) {
    await sleep(1000);
    if (o.scenario === 'outage' && s === o.outageAtS) {
      await broker.down();
      brokerDown = true;
    }
    if (o.scenario === 'outage' && brokerDown && s === o.outageAtS + o.outageS) {
      await broker.up();
      brokerDown = false;
    }
    if (o.limitAtS !== null && s === o.limitAtS && !brokerDown) {
      cloud = await mqtt.connectAsync(broker.url, { clientId: 'fleet-sim-cloud', protocolVersion: 5 });
      await cloud.publishAsync('bike/fleet/limits', JSON.stringify({ v: 1, uploadBytesPerS: o.limitBytesPerS }), { qos: 1, retain: true });
      limitSet = true;
    }
    const connects = sum('connects');
    const bytes = sum('bytesSent');
    const bytesThisSecond = bytes - lastBytes;
    histogram.push(connects - lastConnects);
    if (
      limitSet &&
      o.limitAtS !== null &&
      s >= o.limitAtS + 2 &&
      s <= o.seconds &&
      !brokerDown &&
      !(o.scenario === 'outage' && s < o.outageAtS + o.outageS + 3)
    )
      bytesAfterLimit.push(bytesThisSecond);
    lastConnects = connects;
    lastBytes = bytes;
    o.onSecond({
      t: s,
      phase: s <= o.seconds ? (brokerDown ? 'outage' : 'riding') : 'draining',
      connectsOpened: histogram[histogram.length - 1],
      packetsAcked: sum('packetsAcked'),
      recordsAcked: sum('recordsAcked'),
      backlog: sum('backlog'),
      received: consumer.ingest.records,
      bytesPerS: bytesThisSecond,
    });
    if (s === o.seconds) for (const w of workers) w.send('stop-riding');
    if (s > o.seconds && sum('backlog') === 0 && consumer.ingest.records >= sum('recordsAcked')) break;
    // Draining: give up after 30 s without progress (the result then shows what is missing).
    const progress = sum('recordsAcked') + consumer.ingest.records;
    if (progress !== lastProgress) {
      lastProgress = progress;
      lastProgressAt = s;
    } else if (s > o.seconds && s - lastProgressAt > 30) break;
  }
  const made = sum('made');
  const acknowledged = sum('recordsAcked');
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve) => {
          w.once('exit', () => resolve());
          w.send('exit');
        }),
    ),
  );
  await sleep(500);
  const result: FleetResult = {
    bikes: o.bikes,
    made,
    acknowledged,
    received: consumer.ingest.records,
    lost: consumer.ingest.summary().lostRecords,
    duplicatesAreWholePackets: consumer.ingest.duplicatesAreWholePackets,
    invalid: consumer.ingest.invalid,
    peakConnectsPerS: Math.max(0, ...histogram),
    reconnectHistogram: histogram,
    aggregateBytesPerSAfterLimit: bytesAfterLimit.length
      ? Math.round(bytesAfterLimit.reduce((a, b) => a + b, 0) / bytesAfterLimit.length)
      : null,
  };
  await consumer.close().catch(() => {});
  await cloud?.endAsync(true).catch(() => {});
  await broker.down();
  return result;
}
