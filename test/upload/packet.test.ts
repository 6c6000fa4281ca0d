import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { deflateRawSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { LiveRecord } from '../../src/metrics/record.js';
import { Spool, type SpoolRow } from '../../src/spool/spool.js';
import { VALUE_COLUMNS } from '../../src/spool/columns.js';
import { buildPacket, decodePacketBytes, decodeRecords, encodePacket, type Packet } from '../../src/upload/packet.js';
import { validatePacket } from '../../src/upload/packet-validate.js';
import { Encoder } from '../../src/upload/cbor.js';
import { seededRandom } from '../../src/sim/rng.js';
import { tempDir } from '../helpers/agent.js';
import { makePipeline } from '../helpers/ride.js';

/**
 * A deliberately small RFC 8949 decoder: the core major types only, definite
 * lengths only, no tags. If it reads a packet the same as cbor-x does, the
 * packet uses no extension any other decoder would trip over.
 */
function coreCbor(b: Uint8Array): unknown {
  let o = 0;
  const arg = (info: number): number => {
    if (info < 24) return info;
    const n = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : -1;
    if (n < 0) throw new Error(`indefinite length or reserved info ${info} at ${o}`);
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 256 + b[o++];
    return v;
  };
  const item = (): unknown => {
    const ib = b[o++];
    const major = ib >> 5;
    const info = ib & 31;
    switch (major) {
      case 0:
        return arg(info);
      case 1:
        return -1 - arg(info);
      case 2: {
        const n = arg(info);
        const v = b.slice(o, o + n);
        o += n;
        return v;
      }
      case 3: {
        const n = arg(info);
        const v = Buffer.from(b.subarray(o, o + n)).toString('utf8');
        o += n;
        return v;
      }
      case 4: {
        const n = arg(info);
        return Array.from({ length: n }, item);
      }
      case 5: {
        const n = arg(info);
        const m: Record<string, unknown> = {};
        for (let i = 0; i < n; i++) {
          const k = item();
          if (typeof k !== 'string') throw new Error('non-text map key');
          m[k] = item();
        }
        return m;
      }
      case 6:
        throw new Error(`tag ${arg(info)} at ${o}: not plain CBOR`);
      default:
        if (info === 20) return false;
        if (info === 21) return true;
        if (info === 22) return null;
        throw new Error(`simple/float ${info} not expected in packets`);
    }
  };
  const v = item();
  if (o !== b.length) throw new Error('trailing bytes');
  return v;
}

const norm = (x: unknown): unknown =>
  JSON.parse(JSON.stringify(x, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)));

function spoolRows(records: LiveRecord[], flushEvery = 10_000): SpoolRow[] {
  const s = Spool.open({
    dir: tempDir('packet-'),
    deviceId: 'bike-pk',
    maxBytes: 1 << 28,
    synchronous: 'OFF',
    memoryRecords: flushEvery + 10,
    log: createLogger('silent'),
  });
  records.forEach((r, i) => {
    s.append(r, 0);
    if (i % flushEvery === flushEvery - 1) s.flush();
  });
  s.flush();
  const rows = s.read(0, records.length + 1);
  s.close();
  return rows;
}

/** One hour of the simulator's interval ride through the real engine. */
function hourOfRiding(): LiveRecord[] {
  const out: LiveRecord[] = [];
  const p = makePipeline(
    {
      name: 'hour',
      loop: true,
      segments: [
        { durationS: 120, cadenceRpm: [70, 95], resistancePct: [25, 45], hrBpm: [100, 140] },
        { durationS: 60, cadenceRpm: 105, resistancePct: 60, hrBpm: [140, 165] },
        { durationS: 90, cadenceRpm: 80, resistancePct: 40, hrBpm: [165, 135] },
      ],
    },
    { seed: 11 },
    { onRecord: (r) => out.push(Object.assign(new LiveRecord(), r)) },
  );
  p.boot();
  p.ride(3600);
  return out;
}

const hour = hourOfRiding();
const rows = spoolRows(hour);

describe('telemetry packets (firmware-protocol/packet.cddl)', () => {
  it('the one-hour ride produced 36,000 records', () => {
    expect(rows.length).toBe(36_000);
  });

  for (const deflate of [false, true]) {
    it(`${deflate ? 'delta+deflate' : 'delta'}: plain CBOR that validates and round-trips every value of every record`, () => {
      const gaps = [{ id: 1, firstSeq: 1, lastSeq: 0 + 4, count: 4, reason: 'evicted' as const, atMs: 0 }];
      const chunk = rows.slice(1000, 1600);
      const bytes = encodePacket({ deviceId: 'bike-pk', ride: 'r-2026-11-25-0001', rows: chunk, gaps, deflate });
      const generic = decodePacketBytes(bytes);
      expect(norm(coreCbor(bytes))).toEqual(norm(generic));
      const v = validatePacket(generic);
      expect(v.ok ? [] : v.errors).toEqual([]);
      const p = (v as { packet: Packet }).packet;
      expect(p.seq).toEqual([chunk[0][0], chunk[chunk.length - 1][0]]);
      expect(p.gaps).toEqual([{ first: 1, last: 4, count: 4, reason: 'evicted' }]);
      const back = decodeRecords(p);
      expect(back.length).toBe(600);
      back.forEach((r, i) => {
        const row = chunk[i];
        expect(r.seq).toBe(row[0]);
        expect(r.t_ms).toBe(Math.round(row[2] / 1000));
        expect(r.wall_ms).toBe(row[3]);
        VALUE_COLUMNS.forEach((c, k) => expect(r.values[c.name]).toBe(row[4 + k]));
        expect(r.flags).toBe(row[4 + VALUE_COLUMNS.length]);
      });
    });
  }

  it('keeps unknown values unknown and places records in wall time across a clock step', () => {
    const recs = hour.slice(0, 50).map((r, i) => Object.assign(new LiveRecord(), r, { hrBpm: i % 4 === 0 ? NaN : r.hrBpm }));
    const chunk = spoolRows(recs).map((row, i) => {
      const copy = [...row];
      if (i >= 30) copy[3] += 3_600_000; // NTP moved the wall clock an hour on record 30
      return copy;
    });
    const p = buildPacket({ deviceId: 'bike-pk', ride: null, rows: chunk, gaps: [], deflate: false });
    expect(p.clock.map((c) => c[0])).toEqual([0, 30]);
    const v = validatePacket(decodePacketBytes(encodePacket({ deviceId: 'bike-pk', ride: null, rows: chunk, gaps: [], deflate: true })));
    expect(v.ok).toBe(true);
    const fromBytes = decodeRecords((v as { packet: Packet }).packet);
    expect(fromBytes).toEqual(decodeRecords(p));
    fromBytes.forEach((r, i) => {
      expect(r.wall_ms).toBe(chunk[i][3]);
      expect(r.values.hr_bpm === null).toBe(i % 4 === 0);
    });
  });

  it('the example in packet.cddl is what the encoder produces, and it validates', () => {
    const cddl = readFileSync(fileURLToPath(new URL('../../firmware-protocol/packet.cddl', import.meta.url)), 'utf8');
    const block = cddl.slice(cddl.indexOf('bytes:'), cddl.indexOf('; Decoded'));
    const hex = block
      .split('\n')
      .filter((l) => /^;\s+[0-9a-f]+$/.test(l))
      .map((l) => l.replace(/^;\s+/, ''))
      .join('');
    const rows: SpoolRow[] = [
      [1201, 0, 600000000, 1795590000000, 901, 2034, 452, 2883, 3318, 141, 52311, 90345, 8],
      [1202, 0, 600100000, 1795590000100, 901, 2041, 452, 2884, 3321, 141, 52403, 90549, 8],
      [1203, 0, 600200000, 1795590000200, null as unknown as number, 2029, 452, 2882, 3317, null as unknown as number, 52495, 90752, 136],
    ];
    const gaps = [{ id: 1, firstSeq: 1001, lastSeq: 1200, count: 200, reason: 'evicted' as const, atMs: 0 }];
    const bytes = encodePacket({ deviceId: 'bike-0042', ride: 'r-7f3a', rows, gaps, deflate: false });
    expect(bytes.toString('hex')).toBe(hex);
    const v = validatePacket(decodePacketBytes(Buffer.from(hex, 'hex')));
    expect(v.ok).toBe(true);
    expect(decodeRecords((v as { packet: Packet }).packet).map((r) => r.wall_ms)).toEqual([1795590000000, 1795590000100, 1795590000200]);
  });

  it('the validator rejects what the schema forbids, naming the problem', () => {
    const good = decodePacketBytes(
      encodePacket({ deviceId: 'bike-pk', ride: null, rows: rows.slice(0, 20), gaps: [], deflate: false }),
    ) as Record<string, unknown>;
    const bad = (mutate: (p: Record<string, unknown>) => void): string[] => {
      const p = structuredClone(good);
      mutate(p);
      const v = validatePacket(p);
      return v.ok ? [] : v.errors;
    };
    expect(bad(() => {})).toEqual([]);
    expect(bad((p) => (p.v = 2))).toContain('v: expected 1, got 2');
    expect(bad((p) => delete p.clock)).toContain('packet: missing key "clock"');
    expect(bad((p) => (p.extra = 1))).toContain('packet: unknown key "extra"');
    expect(bad((p) => (p.dev = 'bike 1'))).toContain('dev: not a device id');
    expect(bad((p) => ((p.cols as Record<string, number[]>).power_dw.length = 19))).toContain('cols.power_dw: 19 elements for n = 20');
    expect(bad((p) => ((p.cols as Record<string, number[]>).seq[3] = 0))).toContain('cols.seq[3]: sequence numbers must increase');
    expect(bad((p) => ((p.cols as Record<string, unknown[]>).flags[0] = null))).toContain('cols.flags[0]: null is not an unsigned integer');
    expect(bad((p) => (p.gaps = [{ first: 5, last: 9, count: 4, reason: 'evicted' }]))).toContain('gaps[0]: count is not last - first + 1');
    expect(bad((p) => (p.enc = 'gzip'))).toContain('enc: not "delta" or "delta+deflate"');
    expect(bad((p) => (p.seq = [1, 99]))).toContain('cols.seq does not end at seq.last');
  });

  it('size on a one-hour ride: at most 1/15 of the same records as JSON objects, and smaller than that JSON gzipped', () => {
    const perPacket = 600; // one minute
    let cbor = 0;
    let cborDeflate = 0;
    let json = 0;
    let jsonGzip = 0;
    for (let i = 0; i < rows.length; i += perPacket) {
      const chunk = rows.slice(i, i + perPacket);
      cbor += encodePacket({ deviceId: 'bike-pk', ride: 'r-1', rows: chunk, gaps: [], deflate: false }).length;
      cborDeflate += encodePacket({ deviceId: 'bike-pk', ride: 'r-1', rows: chunk, gaps: [], deflate: true }).length;
      const objects = hour.slice(i, i + perPacket).map((r, k) => ({
        deviceId: 'bike-pk',
        seq: chunk[k][0],
        tUs: r.tUs,
        wallMs: chunk[k][3],
        cadenceRpm: r.cadenceRpm,
        powerW: r.powerW,
        resistancePct: r.resistancePct,
        flywheelRpm: r.flywheelRpm,
        speedKmh: r.speedKmh,
        hrBpm: r.hrBpm,
        distanceM: r.distanceM,
        energyKj: r.energyKj,
        flags: r.flags,
      }));
      const text = Buffer.from(JSON.stringify(objects));
      json += text.length;
      jsonGzip += gzipSync(text).length;
    }
    const perRecord = (n: number) => Number((n / rows.length).toFixed(2));
    const report = { cbor: perRecord(cbor), cborDeflate: perRecord(cborDeflate), json: perRecord(json), jsonGzip: perRecord(jsonGzip) };
    console.log(`bytes per record on a 1-hour ride: ${JSON.stringify(report)}`);
    expect(cborDeflate * 15).toBeLessThanOrEqual(json);
    expect(cborDeflate).toBeLessThan(jsonGzip);
  });
});

describe('packet encoding, against a straightforward reference', () => {
  // The encoder as it was first written: build the packet, then widen every integer beyond 32 bits to a BigInt
  // by walking the whole value. encodePacket builds with loops and widens field by field; the bytes must not differ.
  const reference = new Encoder({ useRecords: false, mapsAsObjects: true, variableMapSize: true, tagUint8Array: false, pack: false });
  const widen = (x: unknown): unknown => {
    if (typeof x === 'number') return Number.isInteger(x) && (x > 0xffffffff || x < -0x100000000) ? BigInt(x) : x;
    if (Array.isArray(x)) return x.map(widen);
    if (x instanceof Uint8Array || x === null || typeof x !== 'object') return x;
    return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, widen(v)]));
  };
  const referenceBytes = (input: Parameters<typeof encodePacket>[0]): Buffer => {
    const plain = buildPacket({ ...input, deflate: false });
    const cols = input.deflate ? new Uint8Array(deflateRawSync(reference.encode(widen(plain.cols)), { level: 6 })) : plain.cols;
    return reference.encode(widen({ ...plain, enc: input.deflate ? 'delta+deflate' : 'delta', cols }));
  };

  it('gives the same bytes on seeded random rows with nulls, wall-clock steps and integers beyond 32 bits', () => {
    const random = seededRandom(1206);
    for (let round = 0; round < 40; round++) {
      const n = 1 + Math.floor(random() * 30);
      const big = round % 2 === 1;
      let seq = big ? 2 ** 33 + round : 1 + round * 100;
      let tUs = big ? 2 ** 45 : 5_000_000;
      let wall = 1.7e12;
      const rows: SpoolRow[] = [];
      for (let i = 0; i < n; i++) {
        seq += random() < 0.1 ? 3 : 1;
        tUs += 100_000;
        wall += random() < 0.05 ? 60_000 : 100;
        // Around the 32-bit edges too: 2^32 - 1 stays a number, 2^32 becomes a BigInt, -2^32 stays, -2^32 - 1 does not.
        const edges = [2 ** 32 - 1, 2 ** 32, -(2 ** 32), -(2 ** 32) - 1, 3e9, -(2 ** 34)];
        const values = VALUE_COLUMNS.map(() =>
          random() < 0.15 ? null : big && random() < 0.3 ? edges[Math.floor(random() * edges.length)] : Math.floor(random() * 5000),
        );
        rows.push([seq, 1, tUs, wall, ...values, Math.floor(random() * 8)] as SpoolRow);
      }
      const gaps = big ? [{ id: 1, firstSeq: 2 ** 33, lastSeq: 2 ** 33 + 5, count: 6, reason: 'evicted' as const, atMs: 0 }] : [];
      for (const deflate of [false, true]) {
        const input = { deviceId: 'bike-ref', ride: round % 3 ? 'ride-uuid' : null, rows, gaps, deflate };
        expect(encodePacket(input).equals(referenceBytes(input))).toBe(true);
      }
    }
  });
});
