/** The Mosquitto ACL we ship (firmware-protocol/broker/mosquitto-acl.conf), on a real Mosquitto with passwords. */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { LiveRecord } from '../../src/metrics/record.js';
import { Spool } from '../../src/spool/spool.js';
import { Uploader } from '../../src/upload/uploader.js';
import { tempDir } from '../helpers/agent.js';
import { Broker } from '../helpers/broker.js';
import { waitFor } from '../helpers/wait.js';

const ACL = fileURLToPath(new URL('../../firmware-protocol/broker/mosquitto-acl.conf', import.meta.url));
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function brokerWithAcl(): Promise<Broker> {
  const dir = tempDir('acl-');
  const pw = join(dir, 'passwords');
  execFileSync('mosquitto_passwd', ['-c', '-b', pw, 'bike-a', 'secret-a']);
  execFileSync('mosquitto_passwd', ['-b', pw, 'bike-b', 'secret-b']);
  execFileSync('mosquitto_passwd', ['-b', pw, 'cloud', 'secret-cloud']);
  const b = await Broker.start(['allow_anonymous false', `password_file ${pw}`, `acl_file ${ACL}`]);
  cleanups.push(() => b.down());
  return b;
}

async function client(url: string, username: string, password: string): Promise<MqttClient> {
  const c = await mqtt.connectAsync(url, {
    clientId: `${username}-${Math.random().toString(36).slice(2, 8)}`,
    username,
    password,
    protocolVersion: 5,
    reconnectPeriod: 0,
  });
  cleanups.push(() => void c.end(true));
  return c;
}

describe('broker ACL', () => {
  it('a bike publishes only under its own id and reads only its own, fleet and group topics; anonymous is refused', async () => {
    const b = await brokerWithAcl();
    const cloud = await client(b.url, 'cloud', 'secret-cloud');
    const got: string[] = [];
    cloud.on('message', (t) => got.push(t));
    await cloud.subscribeAsync('bike/#', { qos: 1 });
    const a = await client(b.url, 'bike-a', 'secret-a');

    await a.publishAsync('bike/bike-a/telemetry', 'mine', { qos: 1 });
    // As another bike: the broker refuses the PUBLISH (MQTT 5 reason 0x87, not authorized) and nobody receives it.
    await expect(a.publishAsync('bike/bike-b/telemetry', 'forged', { qos: 1 })).rejects.toThrow(/Not authorized|135/i);
    await expect(a.publishAsync('bike/fleet/limits', '{"v":1,"uploadBytesPerS":1}', { qos: 1 })).rejects.toThrow(/Not authorized|135/i);
    await waitFor(() => got.includes('bike/bike-a/telemetry'), 'own publish delivered', 5000);
    await new Promise((r) => setTimeout(r, 300));
    expect(got).toEqual(['bike/bike-a/telemetry']);

    // Reading: Mosquitto grants the SUBSCRIBE but delivers only what the ACL lets the bike read.
    const seenByA: string[] = [];
    a.on('message', (t) => seenByA.push(t));
    await a.subscribeAsync(['bike/bike-a/cmd', 'bike/fleet/limits', 'bike/group/berlin/cmd', 'bike/bike-b/cmd', 'bike/bike-b/telemetry'], {
      qos: 1,
    });
    for (const t of ['bike/bike-b/cmd', 'bike/bike-b/telemetry', 'bike/bike-a/cmd', 'bike/fleet/limits', 'bike/group/berlin/cmd'])
      await cloud.publishAsync(t, 'x', { qos: 1 });
    await waitFor(() => seenByA.length >= 3, 'own, fleet and group topics delivered', 5000);
    await new Promise((r) => setTimeout(r, 300));
    expect(seenByA.sort()).toEqual(['bike/bike-a/cmd', 'bike/fleet/limits', 'bike/group/berlin/cmd']);

    await expect(mqtt.connectAsync(b.url, { clientId: 'anon', protocolVersion: 5, reconnectPeriod: 0 })).rejects.toThrow(
      /Not authorized|Bad User Name or Password|135|134/i,
    );
    await expect(
      mqtt.connectAsync(b.url, { clientId: 'liar', username: 'bike-a', password: 'wrong', protocolVersion: 5, reconnectPeriod: 0 }),
    ).rejects.toThrow();
  });

  it("the agent's uploader logs in as its device id and uploads through the ACL", async () => {
    const b = await brokerWithAcl();
    const cloud = await client(b.url, 'cloud', 'secret-cloud');
    let packets = 0;
    cloud.on('message', () => packets++);
    await cloud.subscribeAsync('bike/bike-b/telemetry', { qos: 1 });
    const log = createLogger('silent');
    const spool = Spool.open({
      dir: tempDir('acl-spool-'),
      deviceId: 'bike-b',
      maxBytes: 1 << 26,
      synchronous: 'NORMAL',
      memoryRecords: 1000,
      log,
    });
    cleanups.push(() => spool.close());
    const r = new LiveRecord();
    for (let i = 0; i < 100; i++) {
      r.tUs += 100_000;
      r.powerW = 150;
      spool.append(r, 0);
    }
    spool.flush();
    const u = new Uploader(spool, {
      url: b.url,
      deviceId: 'bike-b',
      username: 'bike-b',
      password: 'secret-b',
      topicPrefix: 'bike',
      agentVersion: 'test',
      sessionExpirySec: 600,
      keepaliveSec: 30,
      maxInflight: 4,
      maxRecordsPerPacket: 50,
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
    await waitFor(() => spool.stats().records === 0, 'every record acknowledged', 10_000);
    expect(packets).toBe(2);
    expect(u.stats().counters.packetsRefused).toBe(0);
  });
});
