/** The uploader against a real Mosquitto, with a real spool file. */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { LiveRecord } from '../../src/metrics/record.js';
import { Spool } from '../../src/spool/spool.js';
import { Uploader, type UploaderOptions } from '../../src/upload/uploader.js';
import { tempDir } from '../helpers/agent.js';
import { Broker, mosquittoAvailable } from '../helpers/broker.js';
import { Consumer } from '../helpers/consumer.js';
import { waitFor } from '../helpers/wait.js';

const log = createLogger('silent');
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function spool(): Spool {
  const s = Spool.open({
    dir: tempDir('up-spool-'),
    deviceId: 'bike-up-1',
    maxBytes: 1 << 28,
    synchronous: 'NORMAL',
    memoryRecords: 100_000,
    log,
  });
  cleanups.push(() => s.close());
  return s;
}

const rec = new LiveRecord();
function fill(s: Spool, n: number): void {
  for (let i = 0; i < n; i++) {
    rec.tUs += 100_000;
    rec.cadenceRpm = 80 + (i % 13);
    rec.powerW = 150 + (i % 37);
    rec.hrBpm = 120;
    s.append(rec, 0);
  }
  s.flush();
}

function uploader(s: Spool, url: string, o: Partial<UploaderOptions> = {}): Uploader {
  const u = new Uploader(s, {
    url,
    deviceId: 'bike-up-1',
    topicPrefix: 'bike',
    agentVersion: 'test',
    sessionExpirySec: 3600,
    keepaliveSec: 30,
    maxInflight: 8,
    maxRecordsPerPacket: 600,
    maxPacketBytes: 256 * 1024,
    rateBytesPerS: 0,
    backoffBaseMs: 200,
    backoffCapMs: 2000,
    deflate: true,
    pollMs: 100,
    log,
    ...o,
  });
  cleanups.push(() => u.stop());
  return u;
}

async function broker(extra: string[] = []): Promise<Broker> {
  const b = await Broker.start(extra);
  cleanups.push(() => b.down());
  return b;
}

async function consumer(url: string): Promise<Consumer> {
  const c = await Consumer.connect(url);
  cleanups.push(() => c.close());
  return c;
}

describe('uploader', () => {
  it('mosquitto is installed (the MQTT tests need it; .ci/run installs it)', () => {
    expect(mosquittoAvailable()).toBe(true);
  });

  it('delivers every committed record exactly once over MQTT 5 and deletes each only after its PUBACK', async () => {
    const b = await broker();
    const c = await consumer(b.url);
    const s = spool();
    fill(s, 5000);
    const u = uploader(s, b.url);
    u.start();
    await waitFor(() => s.stats().records === 0, 'spool drained');
    await waitFor(() => c.seen.size === 5000, 'all records at the consumer');
    expect(c.invalid).toEqual([]);
    expect([...c.seen.keys()].sort((x, y) => x - y)).toEqual(Array.from({ length: 5000 }, (_, i) => i + 1));
    expect([...c.seen.values()].every((n) => n === 1)).toBe(true);
    expect(u.counters.recordsAcked).toBe(5000);
    expect(u.stats()).toMatchObject({ state: 'connected', protocolVersion: 5 });
    expect(c.status.some((st) => st.state === 'online' && st.version === 'test' && st.backlog === 5000)).toBe(true);
    // Live records committed later follow.
    fill(s, 30);
    await waitFor(() => c.seen.size === 5030, 'live records');
    await u.stop();
    await waitFor(() => c.status.some((st) => st.state === 'offline'), 'offline status');
  });

  it('a spool it cannot read: said once with its stack, not at every poll; said again when reading works; nothing lost', async () => {
    const b = await broker();
    const c = await consumer(b.url);
    const s = spool();
    const dir = tempDir('up-log-');
    const logFile = join(dir, 'log.jsonl');
    const lines = (): Array<Record<string, unknown>> =>
      readFileSync(logFile, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    // The read fails as a worn flash's would (an I/O error), while records keep being committed.
    const read = s.read.bind(s);
    let failing = true;
    s.read = (afterSeq, limit) => {
      if (failing) throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_READ' });
      return read(afterSeq, limit);
    };
    const u = uploader(s, b.url, { log: createLogger('info', {}, { destination: logFile }) });
    u.start();
    await waitFor(() => u.stats().state === 'connected', 'connected');
    for (let i = 0; i < 5; i++) {
      fill(s, 20);
      await sleep(150); // a poll (100 ms) at least each time
    }
    const failed = lines().filter((l) => l.msg === 'uploader cannot read the spool; trying again at every poll');
    expect(failed).toHaveLength(1);
    expect(failed[0].err).toMatchObject({ message: 'disk I/O error', code: 'SQLITE_IOERR_READ' });
    expect((failed[0].err as { stack: string }).stack).toMatch(/uploader\.test\.ts/);
    expect(u.stats().lastError).toBe('disk I/O error');
    expect(c.seen.size).toBe(0);
    failing = false;
    await waitFor(() => c.seen.size === 100, 'every record once reading works');
    expect(lines().filter((l) => l.msg === 'uploader reads the spool again')).toHaveLength(1);
    expect(lines().filter((l) => l.msg === 'uploader cannot read the spool; trying again at every poll')).toHaveLength(1);
  });

  it("never has more packets in flight than the broker's Receive Maximum, nor a packet over its Maximum Packet Size", async () => {
    const b = await broker(['max_inflight_messages 2', 'max_packet_size 4096']);
    const c = await consumer(b.url);
    const s = spool();
    fill(s, 20_000);
    const u = uploader(s, b.url, { maxInflight: 16, deflate: false });
    u.start();
    await waitFor(() => s.stats().records === 0, 'spool drained', 30_000);
    await waitFor(() => c.seen.size === 20_000, 'all records at the consumer');
    expect(u.stats().window).toBe(2);
    expect(u.counters.maxInflightSeen).toBe(2);
    expect(Math.max(...c.packets.map((p) => p.bytes))).toBeLessThanOrEqual(4096 - 256);
    expect(c.packets.length).toBeGreaterThan(20_000 / 600); // packets were split to fit
    expect(c.invalid).toEqual([]);
  });

  it('a broker outage: records keep spooling, the uploader reconnects with backoff, every record arrives, in sequence order', async () => {
    const dir = tempDir('mosq-persist-');
    const b = await broker(Broker.persistence(dir));
    const c = await consumer(b.url);
    const s = spool();
    const u = uploader(s, b.url, { maxRecordsPerPacket: 100 });
    u.start();
    let riding = true;
    const ride = (async () => {
      while (riding) {
        fill(s, 10); // one second of records, committed
        await sleep(50);
      }
    })();
    await waitFor(() => c.seen.size >= 100, 'live upload');
    await b.down('SIGTERM');
    await waitFor(() => u.state === 'waiting' || u.state === 'connecting', 'uploader noticing');
    await sleep(3000); // the outage, while the ride goes on
    const backlog = s.stats().records;
    expect(backlog).toBeGreaterThan(300);
    await b.up();
    await sleep(500);
    riding = false;
    await ride;
    const total = s.stats().nextSeq - 1;
    await waitFor(() => s.stats().records === 0, 'backlog drained', 30_000);
    await waitFor(() => c.seen.size === total, 'every record at the consumer', 30_000);
    expect(c.invalid).toEqual([]);
    // Every record, each packet in sequence order; the backlog itself drained oldest first.
    expect([...c.seen.keys()].sort((x, y) => x - y)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(c.duplicatesAreWholePackets()).toBe(true);
    expect(u.counters.disconnects).toBeGreaterThanOrEqual(1);
    expect(u.counters.connects).toBeGreaterThanOrEqual(2);
  });

  it('the spool cap reached during a long outage: the file stays under the cap, the newest records arrive, the gap arrives with its exact size', async () => {
    const b = await broker(Broker.persistence(tempDir('mosq-cap-')));
    const c = await consumer(b.url);
    await b.down('SIGTERM'); // the outage starts before the ride; the consumer's session survives it
    const maxBytes = 1 << 20;
    const s = Spool.open({ dir: tempDir('up-cap-'), deviceId: 'bike-up-1', maxBytes, synchronous: 'NORMAL', memoryRecords: 1000, log });
    cleanups.push(() => s.close());
    const u = uploader(s, b.url, { backoffBaseMs: 100, backoffCapMs: 300 });
    u.start();
    const total = 80_000; // more than 1 MiB holds
    for (let i = 0; i < total; i += 10) {
      fill(s, 10);
      expect(s.bytes()).toBeLessThanOrEqual(maxBytes);
    }
    const st = s.stats();
    expect(st.evictedRecords).toBeGreaterThan(0);
    expect(st.newestSeq).toBe(total);
    await b.up();
    await waitFor(() => s.stats().records === 0, 'drained after the outage', 30_000);
    await waitFor(() => c.seen.size === st.records, 'kept records at the consumer');
    expect(c.invalid).toEqual([]);
    // Delivered records and reported gaps together account for every sequence number, exactly once.
    const accounted = new Array<number>(total + 1).fill(0);
    for (const seq of c.seen.keys()) accounted[seq]++;
    for (const g of c.gaps) for (let q = g.first; q <= g.last; q++) accounted[q]++;
    expect(accounted.slice(1).every((n) => n === 1)).toBe(true);
    expect(c.gaps.reduce((n, g) => n + g.count, 0)).toBe(st.evictedRecords);
    expect(c.seen.has(total)).toBe(true); // the newest record made it
    expect(s.unreportedGaps()).toEqual([]); // reported once, then marked
  });

  it('live records go before the backlog left from an outage', async () => {
    const b = await broker();
    const c = await consumer(b.url);
    const s = spool();
    fill(s, 20_000); // the backlog: about half an hour of riding
    const backlogEnd = s.stats().newestSeq!;
    const u = uploader(s, b.url, { rateBytesPerS: 6000, deflate: false, maxRecordsPerPacket: 200 });
    u.start();
    await waitFor(() => u.state === 'connected', 'connected');
    for (let k = 0; k < 10; k++) {
      fill(s, 10); // live riding, one second at a time
      await sleep(200);
    }
    await waitFor(() => [...c.seen.keys()].some((q) => q > backlogEnd), 'a live record delivered', 10_000);
    // Live records arrived while most of the backlog is still waiting.
    expect(s.stats().oldestSeq!).toBeLessThan(backlogEnd / 2);
    const backlogArrivals = c.firstArrivals().filter((q) => q <= backlogEnd);
    expect(backlogArrivals).toEqual([...backlogArrivals].sort((x, y) => x - y));
  });

  it('the rate limit spaces packets out (token bucket on bytes)', async () => {
    const b = await broker();
    const c = await consumer(b.url);
    const s = spool();
    fill(s, 3000);
    const u = uploader(s, b.url, { rateBytesPerS: 2000, maxRecordsPerPacket: 200, deflate: false }); // about 2.4 kB a packet
    u.start();
    await sleep(1500);
    // With 2,000 bytes/s and a one-second burst, at most about 2 s worth has gone.
    expect(u.counters.bytesSent).toBeLessThanOrEqual(2000 * 2 + 2500);
    expect(s.stats().records).toBeGreaterThan(0);
    u.setRate(0);
    await waitFor(() => s.stats().records === 0, 'drained once unlimited');
    await waitFor(() => c.seen.size === 3000, 'all records');
  });

  it('mutual TLS: uploads with a client certificate; a client without one is refused', async () => {
    const dir = tempDir('tls-');
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=test-ca');
    for (const [name, subject, ext] of [
      ['server', '/CN=localhost', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
      ['client', '/CN=bike-up-1', 'extendedKeyUsage=clientAuth'],
    ]) {
      ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
      writeFileSync(join(dir, `${name}.ext`), `${ext}\n`);
      ssl(
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${name}.crt`,
        '-days',
        '2',
        '-extfile',
        `${name}.ext`,
      );
    }
    const b = await broker([
      `cafile ${join(dir, 'ca.crt')}`,
      `certfile ${join(dir, 'server.crt')}`,
      `keyfile ${join(dir, 'server.key')}`,
      'require_certificate true',
      'use_identity_as_username true',
    ]);
    expect(b.url).toMatch(/^mqtts:/);
    const c = await Consumer.connect(b.url, 'consumer-tls', {
      ca: readFileSync(join(dir, 'ca.crt')),
      cert: readFileSync(join(dir, 'client.crt')),
      key: readFileSync(join(dir, 'client.key')),
    });
    cleanups.push(() => c.close());
    const s = spool();
    fill(s, 1000);
    const u = uploader(s, b.url, {
      tls: { caFile: join(dir, 'ca.crt'), certFile: join(dir, 'client.crt'), keyFile: join(dir, 'client.key') },
    });
    u.start();
    await waitFor(() => s.stats().records === 0, 'drained over TLS');
    await waitFor(() => c.seen.size === 1000, 'records at the consumer');

    const s2 = spool();
    fill(s2, 10);
    const noCert = uploader(s2, b.url, { tls: { caFile: join(dir, 'ca.crt') } });
    noCert.start();
    await waitFor(() => noCert.counters.connectFailures >= 1, 'refused without a client certificate');
    expect(noCert.counters.connects).toBe(0);
    expect(s2.stats().records).toBe(10); // nothing lost: still spooled
  });
});
