/** Limits the cloud sets (retained fleet and device messages), obeyed by the real uploader against Mosquitto. */
import mqtt, { type MqttClient } from 'mqtt';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, RecentLog } from '../../src/log/logger.js';
import { LiveRecord } from '../../src/metrics/record.js';
import { Spool } from '../../src/spool/spool.js';
import { ServerLimits } from '../../src/upload/limits.js';
import { Uploader } from '../../src/upload/uploader.js';
import { tempDir } from '../helpers/agent.js';
import { Broker } from '../helpers/broker.js';
import { waitFor } from '../helpers/wait.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('server-set limits', () => {
  it('fleet limit, a device override, an invalid message ignored, the override cleared: each obeyed within a second or two, and reported', async () => {
    const broker = await Broker.start();
    cleanups.push(() => broker.down());
    const cloud: MqttClient = await mqtt.connectAsync(broker.url, { clientId: 'cloud', protocolVersion: 5 });
    cleanups.push(() => void cloud.end(true));
    const arrivals: Array<{ t: number; bytes: number }> = [];
    const status: Array<Record<string, unknown>> = [];
    cloud.on('message', (topic, payload) => {
      if (topic.endsWith('/telemetry')) arrivals.push({ t: Date.now(), bytes: payload.length });
      else if (topic.endsWith('/status')) status.push(JSON.parse(payload.toString()) as Record<string, unknown>);
    });
    await cloud.subscribeAsync(['bike/lim-1/telemetry', 'bike/lim-1/status'], { qos: 0 });
    // The fleet limit is already there (retained) when the bike connects.
    await cloud.publishAsync('bike/fleet/limits', JSON.stringify({ v: 1, uploadBytesPerS: 20_000, backoffBaseMs: 4000 }), {
      qos: 1,
      retain: true,
    });

    const recent = new RecentLog();
    const log = createLogger('warn', {}, { recent, destination: '/dev/null' });
    const spool = Spool.open({
      dir: tempDir('lim-'),
      deviceId: 'lim-1',
      maxBytes: 1 << 28,
      synchronous: 'NORMAL',
      memoryRecords: 100_000,
      log,
    });
    cleanups.push(() => spool.close());
    const r = new LiveRecord();
    for (let i = 0; i < 80_000; i++) {
      r.tUs += 100_000;
      r.cadenceRpm = 60 + ((i * 7919) % 61);
      r.powerW = 100 + ((i * 104729) % 301) / 3;
      r.hrBpm = 100 + (i % 80);
      spool.append(r, 0);
    }
    spool.flush();
    const u = new Uploader(spool, {
      url: broker.url,
      deviceId: 'lim-1',
      topicPrefix: 'bike',
      agentVersion: 'test',
      sessionExpirySec: 600,
      keepaliveSec: 30,
      maxInflight: 8,
      maxRecordsPerPacket: 200,
      maxPacketBytes: 256 * 1024,
      rateBytesPerS: 0,
      backoffBaseMs: 1000,
      backoffCapMs: 60_000,
      deflate: false,
      pollMs: 100,
      log,
    });
    cleanups.push(() => u.stop());
    u.start();
    /** Bytes per second arriving between from and to (ms after now). */
    const rate = async (seconds: number): Promise<number> => {
      const t0 = Date.now();
      await sleep(seconds * 1000);
      const got = arrivals.filter((a) => a.t > t0).reduce((n, a) => n + a.bytes, 0);
      return got / seconds;
    };
    await waitFor(() => u.stats().limits.source.uploadBytesPerS === 'fleet', 'fleet limit applied', 5000);
    expect(u.stats().limits).toMatchObject({
      uploadBytesPerS: 20_000,
      backoffBaseMs: 4000,
      source: { uploadBytesPerS: 'fleet', backoffBaseMs: 'fleet', drainBytesPerS: 'config' },
    });
    await sleep(1500); // past the first second's burst
    const fleetRate = await rate(3);
    expect(Math.abs(fleetRate / 20_000 - 1)).toBeLessThan(0.1);

    // The cloud slows this bike down: obeyed within a second, the aggregate within 10 % two seconds later.
    await cloud.publishAsync('bike/lim-1/limits', JSON.stringify({ v: 1, uploadBytesPerS: 6000 }), { qos: 1, retain: true });
    const t = Date.now();
    await waitFor(() => u.stats().limits.uploadBytesPerS === 6000, 'device limit', 1000);
    expect(Date.now() - t).toBeLessThan(1000);
    await sleep(1000);
    const deviceRate = await rate(3);
    expect(Math.abs(deviceRate / 6000 - 1)).toBeLessThan(0.1);
    await waitFor(
      () => status.some((s) => (s.limits as { uploadBytesPerS?: number })?.uploadBytesPerS === 6000),
      'status reports the limit',
      5000,
    );
    expect(status[status.length - 1].limits).toMatchObject({ uploadBytesPerS: 6000, source: { uploadBytesPerS: 'device' } });

    // Invalid: ignored, reported, the limit in force stays.
    await cloud.publishAsync('bike/lim-1/limits', JSON.stringify({ v: 1, uploadBytesPerS: -5 }), { qos: 1, retain: true });
    await waitFor(() => recent.list().some((e) => e.msg === 'limits message ignored'), 'invalid limits reported', 5000);
    expect(String(recent.list().find((e) => e.msg === 'limits message ignored')!.fields.err)).toMatch(/device limits: uploadBytesPerS/);
    expect(u.stats().limits.uploadBytesPerS).toBe(6000);

    // The override cleared (empty retained message): the fleet's limit again.
    await cloud.publishAsync('bike/lim-1/limits', '', { qos: 1, retain: true });
    await waitFor(() => u.stats().limits.uploadBytesPerS === 20_000, 'back to the fleet limit', 2000);
    await cloud.publishAsync('bike/fleet/limits', '', { qos: 1, retain: true });
    await waitFor(() => u.stats().limits.source.uploadBytesPerS === 'config', 'back to the configuration', 2000);
    expect(u.stats().limits.uploadBytesPerS).toBe(0);
  }, 60_000);

  it('limits merge field by field (device over fleet over configuration); an invalid message is refused naming the field', () => {
    const l = new ServerLimits({ uploadBytesPerS: 32_768, drainBytesPerS: 0, backoffBaseMs: 1000 });
    expect(l.set('fleet', Buffer.from(JSON.stringify({ v: 1, drainBytesPerS: 4000 })))).toBeNull();
    expect(l.set('device', Buffer.from('{"v":2}'))).toMatch(/device limits: v/);
    expect(l.current()).toMatchObject({
      uploadBytesPerS: 32_768,
      drainBytesPerS: 4000,
      source: { drainBytesPerS: 'fleet', uploadBytesPerS: 'config' },
    });
  });
});
