/** A test consumer: subscribes to telemetry, validates every packet, counts records by sequence number. */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { decodePacketBytes, decodeRecords, type PacketGap } from '../../src/upload/packet.js';
import { validatePacket } from '../../src/upload/packet-validate.js';

export interface Received {
  range: [number, number];
  ride: string | null;
  bytes: number;
  seqs: number[];
}

export class Consumer {
  readonly packets: Received[] = [];
  readonly invalid: string[] = [];
  readonly seen = new Map<number, number>();
  /** A record's identity (its time and wall clock) by sequence number, to tell a re-sent record from a reused number. */
  private readonly identity = new Map<number, string>();
  /** Sequence numbers that arrived on two different records (never allowed). */
  readonly reused: number[] = [];
  readonly status: Array<Record<string, unknown>> = [];
  /** Gaps reported by packets, in arrival order. */
  readonly gaps: PacketGap[] = [];
  /** Ride summaries and purge notices (decoded CBOR), in arrival order. */
  readonly rideSummaries: Array<Record<string, unknown>> = [];
  readonly purges: Array<Record<string, unknown>> = [];
  private constructor(readonly client: MqttClient) {}

  static async connect(url: string, id = `consumer-${process.pid}-${Date.now()}`, extra: IClientOptions = {}): Promise<Consumer> {
    const client = mqtt.connect(url, {
      clientId: id,
      clean: false,
      protocolVersion: 5,
      properties: { sessionExpiryInterval: 3600 },
      reconnectPeriod: 100,
      ...extra,
    });
    const c = new Consumer(client);
    client.on('message', (topic, payload) => c.onMessage(topic, payload));
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () =>
        client.subscribe(['bike/+/telemetry', 'bike/+/status', 'bike/+/ride', 'bike/+/purge'], { qos: 1 }, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
      client.once('error', reject);
    });
    return c;
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic.endsWith('/status')) {
      this.status.push(JSON.parse(payload.toString()) as Record<string, unknown>);
      return;
    }
    if (topic.endsWith('/ride') || topic.endsWith('/purge')) {
      (topic.endsWith('/ride') ? this.rideSummaries : this.purges).push(decodePacketBytes(payload) as Record<string, unknown>);
      return;
    }
    const v = validatePacket(decodePacketBytes(payload));
    if (!v.ok) {
      this.invalid.push(v.errors.join('; '));
      return;
    }
    const records = decodeRecords(v.packet);
    const seqs = records.map((r) => r.seq);
    for (const r of records) {
      const id = `${r.t_ms}/${r.wall_ms}`;
      const had = this.identity.get(r.seq);
      if (had === undefined) this.identity.set(r.seq, id);
      else if (had !== id) this.reused.push(r.seq);
    }
    this.gaps.push(...v.packet.gaps);
    this.packets.push({ range: v.packet.seq, ride: v.packet.ride, bytes: payload.length, seqs });
    for (const s of seqs) this.seen.set(s, (this.seen.get(s) ?? 0) + 1);
  }

  /** Sequence numbers in order of first arrival. */
  firstArrivals(): number[] {
    const out: number[] = [];
    const done = new Set<number>();
    for (const p of this.packets)
      for (const s of p.seqs)
        if (!done.has(s)) {
          done.add(s);
          out.push(s);
        }
    return out;
  }

  /**
   * True when records arrived twice only as whole packets. Two packets that
   * share a record nest (one's sequence range contains the other's), so a re-sent
   * packet always carries whole earlier packets, never a slice of one.
   */
  duplicatesAreWholePackets(): boolean {
    const ps = this.packets;
    for (let i = 0; i < ps.length; i++)
      for (let j = i + 1; j < ps.length; j++) {
        const [a0, a1] = ps[i].range;
        const [b0, b1] = ps[j].range;
        if (a1 < b0 || b1 < a0) continue;
        const nested = (a0 <= b0 && b1 <= a1) || (b0 <= a0 && a1 <= b1);
        if (!nested) return false;
      }
    return true;
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.client.end(true, {}, () => r()));
  }
}
