/** MQTT 3.1.1 fallback, against an in-process aedes broker (which speaks 3.1.1, not 5). */
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { LiveRecord } from '../../src/metrics/record.js';
import { Spool } from '../../src/spool/spool.js';
import { Uploader } from '../../src/upload/uploader.js';
import { tempDir } from '../helpers/agent.js';
import { waitFor } from '../helpers/wait.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('uploader protocol fallback', () => {
  it('falls back to MQTT 3.1.1 when the broker refuses MQTT 5, and delivers', async () => {
    const { Aedes } = await import('aedes');
    const aedes = await Aedes.createBroker();
    const received: number[] = [];
    aedes.on('publish', (packet) => {
      if (packet.topic.endsWith('/telemetry')) received.push(packet.payload.length);
    });
    const server: Server = createServer(aedes.handle);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => aedes.close(() => server.close(() => r()))));
    const port = (server.address() as { port: number }).port;

    const log = createLogger('silent');
    const s = Spool.open({
      dir: tempDir('fallback-'),
      deviceId: 'bike-311',
      maxBytes: 1 << 24,
      synchronous: 'NORMAL',
      memoryRecords: 1000,
      log,
    });
    cleanups.push(() => s.close());
    const r = new LiveRecord();
    for (let i = 0; i < 500; i++) {
      r.tUs += 100_000;
      s.append(r, 0);
    }
    s.flush();
    const u = new Uploader(s, {
      url: `mqtt://127.0.0.1:${port}`,
      deviceId: 'bike-311',
      topicPrefix: 'bike',
      agentVersion: 'test',
      sessionExpirySec: 3600,
      keepaliveSec: 30,
      maxInflight: 4,
      maxRecordsPerPacket: 100,
      maxPacketBytes: 1 << 20,
      rateBytesPerS: 0,
      backoffBaseMs: 50,
      backoffCapMs: 200,
      deflate: true,
      pollMs: 100,
      log,
    });
    cleanups.push(() => u.stop());
    u.start();
    await waitFor(() => s.stats().records === 0, 'drained over MQTT 3.1.1');
    expect(u.stats().protocolVersion).toBe(4);
    expect(u.counters.protocolFallbacks).toBe(1);
    expect(received.length).toBe(5);
  });
});
