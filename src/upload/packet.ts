/**
 * Telemetry packets: spool rows -> standard CBOR (RFC 8949), columnar and
 * delta-encoded, optionally deflated. The schema is firmware-protocol/packet.cddl;
 * validatePacket() checks a decoded packet against it.
 *
 * Columnar + delta because consecutive 10 Hz records differ little: a column
 * of small differences is mostly 1- and 2-byte CBOR integers, and deflate
 * finds the repeats. No cbor-x extensions (records, typed-array tags), so every
 * RFC 8949 decoder in any language reads these packets.
 */
import { Encoder, decode } from './cbor.js';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { Gap, SpoolRow } from '../spool/spool.js';
import { ROW_COLUMNS, VALUE_COLUMNS } from '../spool/columns.js';

export const PACKET_SCHEMA_VERSION = 1;

export type Encoding = 'delta' | 'delta+deflate';

export interface PacketGap {
  first: number;
  last: number;
  count: number;
  reason: Gap['reason'];
}

/** The columns of a packet, each one value per record. */
export interface PacketColumns {
  /** Sequence numbers: the first absolute, then differences (1 when contiguous). */
  seq: number[];
  /** Engine time in ms: the first absolute, then differences. */
  t_ms: number[];
  /** Scaled values (see VALUE_COLUMNS): differences from the previous known value; null where unknown. */
  [value: string]: Array<number | null>;
}

export interface Packet {
  v: number;
  dev: string;
  /** Ride id, or null for records outside a ride. */
  ride: string | null;
  /** First and last sequence number carried: with `dev`, the idempotency key of every record. */
  seq: [number, number];
  n: number;
  /**
   * Wall-clock placement: [index, offset_ms] pairs, from record `index` on
   * wall_ms = t_ms + offset_ms (the first pair has index 0; a later pair
   * marks a wall-clock jump).
   */
  clock: Array<[number, number]>;
  gaps: PacketGap[];
  enc: Encoding;
  /** PacketColumns, or their CBOR encoding deflated (RFC 1951, raw) when enc is "delta+deflate". */
  cols: PacketColumns | Uint8Array;
}

/** A record as it comes out of a packet: the spool row's named values, unscaled to integers as stored. */
export interface DecodedRecord {
  seq: number;
  t_ms: number;
  wall_ms: number;
  values: Record<string, number | null>;
  flags: number;
}

const encoder = new Encoder({
  useRecords: false,
  mapsAsObjects: true,
  variableMapSize: true,
  tagUint8Array: false,
  pack: false,
});

const C = (name: (typeof ROW_COLUMNS)[number]) => ROW_COLUMNS.indexOf(name);
const SEQ = C('seq');
const T = C('t_us');
const WALL = C('wall_ms');
const FLAGS = C('flags');
const FIRST_VALUE = C(VALUE_COLUMNS[0].name);

export interface EncodeInput {
  deviceId: string;
  ride: string | null;
  /** Spool rows, in sequence order. */
  rows: readonly SpoolRow[];
  gaps: readonly Gap[];
  deflate: boolean;
}

// Plain loops, no callbacks: this runs once a second, too rarely for V8 to optimise it, so what it costs is what the
// interpreter and baseline code pay per call and per closure.
export function buildColumns(rows: readonly SpoolRow[]): PacketColumns {
  const n = rows.length;
  const seq = new Array<number>(n);
  const t = new Array<number>(n);
  const flags = new Array<number>(n);
  let prevSeq = 0;
  let prevT = 0;
  for (let i = 0; i < n; i++) {
    const row = rows[i];
    const s = row[SEQ];
    const tMs = Math.round(row[T] / 1000);
    seq[i] = i === 0 ? s : s - prevSeq;
    t[i] = i === 0 ? tMs : tMs - prevT;
    prevSeq = s;
    prevT = tMs;
    flags[i] = row[FLAGS];
  }
  // Keys in the order of packet.cddl.
  const cols: PacketColumns = { seq, t_ms: t };
  for (let c = 0; c < VALUE_COLUMNS.length; c++) {
    const column = new Array<number | null>(n);
    let last = 0;
    for (let i = 0; i < n; i++) {
      const v = rows[i][FIRST_VALUE + c] as number | null;
      if (v === null) column[i] = null;
      else {
        column[i] = v - last;
        last = v;
      }
    }
    cols[VALUE_COLUMNS[c].name] = column;
  }
  cols.flags = flags;
  return cols;
}

function clockOf(rows: readonly SpoolRow[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let prev = NaN;
  for (let i = 0; i < rows.length; i++) {
    const offset = rows[i][WALL] - Math.round(rows[i][T] / 1000);
    // A change of more than a few ms is a wall-clock step (NTP, a set clock); smaller is rounding.
    if (!(Math.abs(offset - prev) <= 2)) {
      out.push([i, offset]);
      prev = offset;
    }
  }
  return out;
}

/** The packet as a value (numbers not yet widened for CBOR; encodePacket does that). */
export function buildPacket(input: EncodeInput): Packet {
  const { rows } = input;
  if (rows.length === 0) throw new RangeError('a packet carries at least one record');
  const cols = buildColumns(rows);
  return {
    v: PACKET_SCHEMA_VERSION,
    dev: input.deviceId,
    ride: input.ride,
    seq: [rows[0][SEQ], rows[rows.length - 1][SEQ]],
    n: rows.length,
    clock: clockOf(rows),
    gaps: input.gaps.map((g) => ({ first: g.firstSeq, last: g.lastSeq, count: g.count, reason: g.reason })),
    enc: input.deflate ? 'delta+deflate' : 'delta',
    cols: input.deflate ? new Uint8Array(deflateRawSync(encoder.encode(wideColumns(cols)), { level: 6 })) : cols,
  };
}

/**
 * cbor-x writes a JS number beyond 32 bits as a float64; CBOR integers of up to
 * 64 bits need a BigInt. Wall-clock offsets (Unix ms) and, in time, sequence
 * numbers are that large, and the schema says int.
 */
const wide = (x: number): number | bigint => (Number.isInteger(x) && (x > 0xffffffff || x < -0x100000000) ? BigInt(x) : x);

/** A column as cbor-x must be given it: large integers widened (in a copy only where there is one). */
function wideColumn(column: Array<number | null>): Array<number | bigint | null> {
  for (let i = 0; i < column.length; i++) {
    const x = column[i];
    if (x !== null && wide(x) !== x) return column.map((y) => (y === null ? null : wide(y)));
  }
  return column;
}

function wideColumns(cols: PacketColumns): Record<string, Array<number | bigint | null>> {
  const out: Record<string, Array<number | bigint | null>> = {};
  for (const name in cols) out[name] = wideColumn(cols[name]);
  return out;
}

/** The packet as cbor-x must be given it, keys in the packet's order (packet.cddl). */
function widePacket(p: Packet): unknown {
  return {
    v: wide(p.v),
    dev: p.dev,
    ride: p.ride,
    seq: [wide(p.seq[0]), wide(p.seq[1])],
    n: wide(p.n),
    clock: p.clock.map(([index, offset]) => [wide(index), wide(offset)]),
    gaps: p.gaps.map((g) => ({ first: wide(g.first), last: wide(g.last), count: wide(g.count), reason: g.reason })),
    enc: p.enc,
    cols: p.cols instanceof Uint8Array ? p.cols : wideColumns(p.cols),
  };
}

/** Safe 64-bit integers back to numbers (cbor-x decodes 64-bit integers as BigInt). */
function narrowSafeInts(x: unknown): unknown {
  if (typeof x === 'bigint') return x <= BigInt(Number.MAX_SAFE_INTEGER) && x >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(x) : x;
  if (Array.isArray(x)) return x.map(narrowSafeInts);
  if (x instanceof Uint8Array || x === null || typeof x !== 'object') return x;
  return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, narrowSafeInts(v)]));
}

export function encodePacket(input: EncodeInput): Buffer {
  return encoder.encode(widePacket(buildPacket(input)));
}

/** Decode a packet's bytes (any RFC 8949 decoder would do; this one is the reference). */
export function decodePacketBytes(bytes: Uint8Array): unknown {
  return narrowSafeInts(decode(bytes));
}

/** The columns of a validated packet, inflated if need be. */
export function packetColumns(p: Packet): PacketColumns {
  if (p.enc === 'delta+deflate') return narrowSafeInts(decode(inflateRawSync(p.cols as Uint8Array))) as PacketColumns;
  return p.cols as PacketColumns;
}

/** Undo the delta encoding: the records a validated packet carries. */
export function decodeRecords(p: Packet): DecodedRecord[] {
  const cols = packetColumns(p);
  const out: DecodedRecord[] = [];
  let seq = 0;
  let t = 0;
  const last: number[] = VALUE_COLUMNS.map(() => 0);
  let clockIdx = 0;
  for (let i = 0; i < p.n; i++) {
    seq = i === 0 ? cols.seq[0] : seq + cols.seq[i];
    t = i === 0 ? cols.t_ms[0] : t + cols.t_ms[i];
    while (clockIdx + 1 < p.clock.length && p.clock[clockIdx + 1][0] <= i) clockIdx++;
    const values: Record<string, number | null> = {};
    VALUE_COLUMNS.forEach((col, c) => {
      const d = cols[col.name][i];
      if (d === null) values[col.name] = null;
      else {
        last[c] += d;
        values[col.name] = last[c];
      }
    });
    out.push({ seq, t_ms: t, wall_ms: t + p.clock[clockIdx][1], values, flags: cols.flags[i] as number });
  }
  return out;
}
