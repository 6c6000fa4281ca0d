/**
 * The reference ingestion logic a cloud consumer runs per packet: validate
 * against the CDDL (packet-validate.ts), de-duplicate by (device, seq), and
 * account for the gaps packets report. Transport-free; consumer.ts feeds it
 * from MQTT, the tests and the fleet simulator count with it.
 *
 * Sequence numbers are reserved in blocks on the bike, so after a restart the
 * numbers jump: numbers never used are not records, and only the gaps a
 * packet reports (evicted from a full spool, dropped from memory on a full
 * disk) are records known lost.
 */
import { decodePacketBytes, decodeRecords, type PacketGap } from '../upload/packet.js';
import { validatePacket } from '../upload/packet-validate.js';

export interface DeviceTally {
  records: number;
  /** Records received again (a whole packet re-sent after a crash or a lost PUBACK). */
  duplicateRecords: number;
  packets: number;
  /** Packets that overlapped an earlier one without nesting in it (should never happen). */
  partialOverlaps: number;
  gaps: PacketGap[];
  lostRecords: number;
  firstSeq: number;
  lastSeq: number;
}

export interface IngestResult {
  ok: boolean;
  device: string | null;
  records: number;
  duplicates: number;
  error?: string;
}

export class TelemetryIngest {
  readonly devices = new Map<string, DeviceTally>();
  /** seq sets per device (a Set is fine for a reference consumer; a store would use its primary key). */
  private readonly seen = new Map<string, Set<number>>();
  private readonly ranges = new Map<string, Array<[number, number]>>();
  invalid = 0;
  readonly invalidReasons: string[] = [];
  packets = 0;
  records = 0;
  duplicateRecords = 0;

  ingest(payload: Uint8Array): IngestResult {
    let v;
    try {
      v = validatePacket(decodePacketBytes(payload));
    } catch (err) {
      return this.bad(`not CBOR: ${(err as Error).message}`);
    }
    if (!v.ok) return this.bad(v.errors.join('; '));
    const p = v.packet;
    const dev = p.dev;
    let t = this.devices.get(dev);
    if (!t) {
      t = { records: 0, duplicateRecords: 0, packets: 0, partialOverlaps: 0, gaps: [], lostRecords: 0, firstSeq: Infinity, lastSeq: 0 };
      this.devices.set(dev, t);
      this.seen.set(dev, new Set());
      this.ranges.set(dev, []);
    }
    const seen = this.seen.get(dev)!;
    const ranges = this.ranges.get(dev)!;
    const [a0, a1] = p.seq;
    for (const [b0, b1] of ranges) {
      if (a1 < b0 || b1 < a0) continue;
      if (!((a0 <= b0 && b1 <= a1) || (b0 <= a0 && a1 <= b1))) t.partialOverlaps++;
    }
    ranges.push([a0, a1]);
    let fresh = 0;
    let dup = 0;
    for (const r of decodeRecords(p)) {
      if (seen.has(r.seq)) dup++;
      else {
        seen.add(r.seq);
        fresh++;
        if (r.seq < t.firstSeq) t.firstSeq = r.seq;
        if (r.seq > t.lastSeq) t.lastSeq = r.seq;
      }
    }
    for (const g of p.gaps) {
      if (!t.gaps.some((x) => x.first === g.first && x.last === g.last)) {
        t.gaps.push(g);
        t.lostRecords += g.count;
      }
    }
    t.packets++;
    t.records += fresh;
    t.duplicateRecords += dup;
    this.packets++;
    this.records += fresh;
    this.duplicateRecords += dup;
    return { ok: true, device: dev, records: fresh, duplicates: dup };
  }

  private bad(reason: string): IngestResult {
    this.invalid++;
    if (this.invalidReasons.length < 20) this.invalidReasons.push(reason);
    return { ok: false, device: null, records: 0, duplicates: 0, error: reason };
  }

  has(device: string, seq: number): boolean {
    return this.seen.get(device)?.has(seq) ?? false;
  }

  /** Duplicates only ever as whole re-sent packets, for every device. */
  get duplicatesAreWholePackets(): boolean {
    for (const t of this.devices.values()) if (t.partialOverlaps > 0) return false;
    return true;
  }

  summary() {
    let lost = 0;
    for (const t of this.devices.values()) lost += t.lostRecords;
    return {
      devices: this.devices.size,
      packets: this.packets,
      records: this.records,
      duplicateRecords: this.duplicateRecords,
      duplicatesAreWholePackets: this.duplicatesAreWholePackets,
      invalid: this.invalid,
      lostRecords: lost,
    };
  }
}
