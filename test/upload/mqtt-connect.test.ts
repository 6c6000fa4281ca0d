// connectMqtt: mqtt.js's client with only the transport the URL names, against
// a real Mosquitto (TCP and WebSocket listeners). TLS is covered end to end by
// the uploader's mutual-TLS test, which connects through the same function.
import type { MqttClient } from 'mqtt';
import { createConnection } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { connectMqtt } from '../../src/upload/mqtt-connect.js';
import { Broker, freePort } from '../helpers/broker.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Connect, publish one QoS 1 message and wait for the broker's PUBACK. */
async function roundTrip(client: MqttClient): Promise<void> {
  cleanups.push(() => void client.end(true));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  await new Promise<void>((resolve, reject) =>
    client.publish('bike/test/connect', 'hello', { qos: 1 }, (err) => (err ? reject(err) : resolve())),
  );
}

/** Until something accepts TCP connections on `port` (Broker.start waits for its first listener only). */
async function listening(port: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`nothing listens on ${port}`);
}

describe('connectMqtt', () => {
  it('mqtt://: connects over TCP with the host and port of the URL', async () => {
    const b = await Broker.start();
    cleanups.push(() => b.down());
    const client = connectMqtt(b.url, { clientId: 'connect-tcp', protocolVersion: 5, reconnectPeriod: 0 });
    await roundTrip(client);
    expect(client.options.protocol).toBe('mqtt');
    expect(client.options.host).toBe('127.0.0.1');
    expect(client.options.port).toBe(Number(new URL(b.url).port));
  });

  it('takes the login from the URL, decoded, unless the options give one', () => {
    // manualConnect: the options are settled; nothing is dialled.
    const a = connectMqtt('mqtt://bike%2D1:p%40ss@127.0.0.1:1', { manualConnect: true });
    const b = connectMqtt('mqtt://bike-1:secret@127.0.0.1:1', { username: 'other', password: 'pw', manualConnect: true });
    expect([a.options.username, a.options.password]).toEqual(['bike-1', 'p@ss']);
    expect([b.options.username, b.options.password]).toEqual(['other', 'pw']);
  });

  it('default ports 1883 and 8883; a client certificate makes mqtt:// mqtts:// (as mqtt.js does); IPv6 literals', () => {
    const plain = connectMqtt('mqtt://127.0.0.1', { manualConnect: true });
    expect([plain.options.protocol, plain.options.port]).toEqual(['mqtt', 1883]);
    const tls = connectMqtt('mqtts://broker.example', { manualConnect: true });
    expect([tls.options.protocol, tls.options.port, tls.options.host]).toEqual(['mqtts', 8883, 'broker.example']);
    const cert = connectMqtt('mqtt://127.0.0.1', { cert: 'c', key: 'k', manualConnect: true });
    expect([cert.options.protocol, cert.options.port]).toEqual(['mqtts', 8883]);
    const v6 = connectMqtt('mqtt://[::1]:1884', { manualConnect: true });
    expect([v6.options.host, v6.options.port]).toEqual(['::1', 1884]);
  });

  it('ws://: goes through mqtt.js’s own connect() to a WebSocket listener', async () => {
    const wsPort = await freePort();
    const b = await Broker.start([`listener ${wsPort} 127.0.0.1`, 'protocol websockets']);
    cleanups.push(() => b.down());
    await listening(wsPort);
    const client = connectMqtt(`ws://127.0.0.1:${wsPort}`, { clientId: 'connect-ws', protocolVersion: 5, reconnectPeriod: 0 });
    await roundTrip(client);
    expect(client.options.protocol).toBe('ws');
  });
});
