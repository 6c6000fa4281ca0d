/**
 * A reference cloud consumer over MQTT: subscribes to every bike's telemetry
 * (optionally as one member of a shared subscription group, so N consumers
 * split the fleet), and ingests each packet with TelemetryIngest.
 */
import type * as Mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';
import { requireCjs } from '../util/require-cjs.js';
import { TelemetryIngest } from './ingest.js';

const mqtt = requireCjs('mqtt') as typeof Mqtt;

export interface ConsumerOptions {
  url: string;
  topicPrefix?: string;
  /** Join `$share/<group>/...`: the broker gives each packet to one member of the group. */
  shareGroup?: string;
  clientId?: string;
  username?: string;
  password?: string;
}

export class ReferenceConsumer {
  readonly ingest = new TelemetryIngest();
  private constructor(readonly client: MqttClient) {}

  static async connect(o: ConsumerOptions): Promise<ReferenceConsumer> {
    const prefix = o.topicPrefix ?? 'bike';
    const client = await mqtt.connectAsync(o.url, {
      clientId: o.clientId ?? `consumer-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
      protocolVersion: 5,
      // A persistent session: what arrives while the consumer is away waits for it.
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
      reconnectPeriod: 1000,
      ...(o.username ? { username: o.username } : {}),
      ...(o.password ? { password: o.password } : {}),
    });
    const c = new ReferenceConsumer(client);
    client.on('message', (_topic, payload) => c.ingest.ingest(payload));
    const topic = `${prefix}/+/telemetry`;
    await client.subscribeAsync(o.shareGroup ? `$share/${o.shareGroup}/${topic}` : topic, { qos: 1 });
    return c;
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}
