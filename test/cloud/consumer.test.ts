/** The reference consumer: validation, de-duplication by (device, seq), reported gaps; shared subscriptions on Mosquitto. */
import { afterEach, describe, expect, it } from 'vitest';
import { ReferenceConsumer } from '../../src/cloud/consumer.js';
import { TelemetryIngest } from '../../src/cloud/ingest.js';
import { createLogger } from '../../src/log/logger.js';
import { LiveRecord } from '../../src/metrics/record.js';
import { Spool, type SpoolRow } from '../../src/spool/spool.js';
import { encodePacket } from '../../src/upload/packet.js';
import { Uploader } from '../../src/upload/uploader.js';
import { tempDir } from '../helpers/agent.js';
import { Broker } from '../helpers/broker.js';
import { waitFor } from '../helpers/wait.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const row = (seq: number): SpoolRow => [
  seq,
  0,
  seq * 100_000,
  1_800_000_000_000 + seq * 100,
  800,
  1500,
  400,
  2560,
  3000,
  130,
  seq * 9,
  seq * 15,
  0,
];
const packet = (dev: string, from: number, to: number, gaps: Parameters<typeof encodePacket>[0]['gaps'] = []) =>
  encodePacket({ deviceId: dev, ride: null, rows: Array.from({ length: to - from + 1 }, (_, i) => row(from + i)), gaps, deflate: true });

describe('reference ingest', () => {
  it('counts records once per (device, seq), whole re-sent packets as duplicates, reported gaps as lost, and refuses invalid packets', () => {
    const ing = new TelemetryIngest();
    expect(ing.ingest(packet('bike-1', 1, 10))).toMatchObject({ ok: true, records: 10, duplicates: 0 });
    expect(ing.ingest(packet('bike-2', 1, 10))).toMatchObject({ ok: true, records: 10 });
    // bike-1 crashed before the PUBACK and sent 1..10 again with 11..20: duplicates, whole packets nested.
    expect(ing.ingest(packet('bike-1', 1, 20))).toMatchObject({ ok: true, records: 10, duplicates: 10 });
    expect(ing.duplicatesAreWholePackets).toBe(true);
    // A gap reported twice counts once.
    const gap = { id: 1, firstSeq: 21, lastSeq: 70, count: 50, reason: 'evicted' as const, atMs: 0 };
    ing.ingest(packet('bike-1', 71, 80, [gap]));
    ing.ingest(packet('bike-1', 81, 90, [gap]));
    expect(ing.devices.get('bike-1')).toMatchObject({ records: 40, duplicateRecords: 10, lostRecords: 50, firstSeq: 1, lastSeq: 90 });
    // A slice of an earlier packet (never sent by a correct bike) is flagged.
    ing.ingest(packet('bike-2', 5, 15));
    expect(ing.duplicatesAreWholePackets).toBe(false);
    expect(ing.ingest(Buffer.from('not cbor at all'))).toMatchObject({ ok: false });
    expect(ing.summary()).toMatchObject({ devices: 2, records: 55, duplicateRecords: 16, invalid: 1, lostRecords: 50 });
  });
});

describe('reference consumer on Mosquitto', () => {
  it("two consumers in a shared subscription split three bikes' uploads; together they have every record exactly once", async () => {
    const broker = await Broker.start();
    cleanups.push(() => broker.down());
    const a = await ReferenceConsumer.connect({ url: broker.url, shareGroup: 'ingest' });
    const b = await ReferenceConsumer.connect({ url: broker.url, shareGroup: 'ingest' });
    cleanups.push(() => a.close());
    cleanups.push(() => b.close());
    const log = createLogger('silent');
    const spools: Spool[] = [];
    for (const id of ['fleet-1', 'fleet-2', 'fleet-3']) {
      const s = Spool.open({ dir: tempDir('cons-'), deviceId: id, maxBytes: 1 << 26, synchronous: 'NORMAL', memoryRecords: 10_000, log });
      cleanups.push(() => s.close());
      const r = new LiveRecord();
      for (let i = 0; i < 3000; i++) {
        r.tUs += 100_000;
        r.powerW = 100 + (i % 50);
        s.append(r, 0);
      }
      s.flush();
      spools.push(s);
      const u = new Uploader(s, {
        url: broker.url,
        deviceId: id,
        topicPrefix: 'bike',
        agentVersion: 'test',
        sessionExpirySec: 600,
        keepaliveSec: 30,
        maxInflight: 4,
        maxRecordsPerPacket: 100,
        maxPacketBytes: 256 * 1024,
        rateBytesPerS: 0,
        backoffBaseMs: 200,
        backoffCapMs: 1000,
        deflate: true,
        pollMs: 100,
        log,
      });
      cleanups.push(() => u.stop());
      u.start();
    }
    await waitFor(() => spools.every((s) => s.stats().records === 0), 'all acknowledged', 20_000);
    await waitFor(() => a.ingest.records + b.ingest.records >= 9000, 'all received', 5000);
    expect(a.ingest.records + b.ingest.records).toBe(9000);
    // Shared: each consumer got a share, and no record went to both.
    expect(a.ingest.packets).toBeGreaterThan(10);
    expect(b.ingest.packets).toBeGreaterThan(10);
    for (const dev of ['fleet-1', 'fleet-2', 'fleet-3']) {
      for (let seq = 1; seq <= 3000; seq++) expect(a.ingest.has(dev, seq) !== b.ingest.has(dev, seq)).toBe(true);
    }
    expect(a.ingest.invalid + b.ingest.invalid).toBe(0);
  }, 60_000);
});
