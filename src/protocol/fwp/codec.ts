/**
 * Flywheel protocol (fwp) v1 message layer: wire frame <-> typed fields.
 * The normative description is firmware-protocol/SPEC.md; golden vectors in
 * firmware-protocol/vectors/ pin every field. Decoding writes into a reusable
 * FwpFrame and returns a numeric result, so the receive path neither allocates
 * nor throws.
 *
 * Over 400 lines: the type codes, body lengths and field order are one table
 * read by both halves, the decoder and the encoders, and the golden vectors
 * check the two against each other; split, a field added to one half could
 * be missed in the other.
 */
import { crc16CcittFalse } from './crc16.js';
import { COBS_MAX_ENCODED, COBS_MAX_PAYLOAD, cobsDecode, cobsEncode } from './cobs.js';

export const FWP_VERSION = 1;
/** Minor version this agent implements; sent by the board in HELLO. 1: firmware update (SPEC.md section 11). */
export const FWP_MINOR_VERSION = 1;
export const HEADER_LEN = 3;
export const CRC_LEN = 2;
export const MAX_BODY = COBS_MAX_PAYLOAD - HEADER_LEN - CRC_LEN;
/** Largest frame on the wire including the 0x00 delimiter. */
export const MAX_WIRE_FRAME = COBS_MAX_ENCODED + 1;

export const MsgType = {
  SAMPLE: 0x01,
  STATUS: 0x02,
  HELLO: 0x03,
  RESPONSE: 0x04,
  LOG: 0x05,
  /** 1.1: the board's answer to each FW_CHUNK (next offset it needs). */
  FW_PROGRESS: 0x06,
  REQUEST: 0x81,
  /** 1.1: a piece of a firmware image, addressed by offset. */
  FW_CHUNK: 0x82,
} as const;

export const BodyLen = {
  SAMPLE: 20,
  STATUS: 14,
  HELLO: 21,
  RESPONSE: 2,
  LOG: 1,
  REQUEST: 1,
  FW_PROGRESS: 6,
  /** offset and crc32; the data follows. */
  FW_CHUNK: 8,
} as const;

/** HELLO body of a minor >= 1 board: the 1.0 layout plus boot_mode and board_model. */
export const HELLO_LEN_V1_1 = 24;

/** HELLO boot_mode (1.1). */
export const BootMode = { APPLICATION: 0, BOOTLOADER: 1 } as const;

export const SampleFlag = {
  FLYWHEEL_FAULT: 1 << 0,
  CRANK_FAULT: 1 << 1,
  BRAKE_MOVING: 1 << 2,
  HR_CONTACT: 1 << 3,
} as const;

export const StatusFault = {
  FLYWHEEL_SENSOR: 1 << 0,
  CRANK_SENSOR: 1 << 1,
  BRAKE_MOTOR: 1 << 2,
  OVER_TEMPERATURE: 1 << 3,
  SUPPLY_VOLTAGE: 1 << 4,
  HR_RECEIVER: 1 << 5,
} as const;

export const RequestOp = {
  GET_HELLO: 0x01,
  SET_SAMPLE_RATE: 0x02,
  ZERO_RESISTANCE: 0x03,
  REBOOT: 0x04,
  // 1.1, firmware update (SPEC.md section 11)
  ENTER_BOOTLOADER: 0x05,
  FW_INFO: 0x10,
  FW_BEGIN: 0x11,
  FW_VERIFY: 0x12,
  FW_TEST_BOOT: 0x13,
  FW_CONFIRM: 0x14,
  FW_ABORT: 0x15,
} as const;

export const ResponseStatus = {
  OK: 0,
  UNKNOWN_OP: 1,
  BAD_ARGUMENT: 2,
  BUSY: 3,
  FAILED: 4,
  /** 1.1: the op exists but not in the mode the board is in (application or bootloader). */
  WRONG_MODE: 5,
} as const;

export const LogLevel = { DEBUG: 0, INFO: 1, WARN: 2, ERROR: 3 } as const;

/** Decode results. Names match the `result=` key of the golden vectors. */
export const FwpResult = {
  OK: 0,
  EMPTY: 1,
  OVERSIZED: 2,
  BAD_COBS: 3,
  TRUNCATED: 4,
  BAD_CRC: 5,
  BAD_VERSION: 6,
  UNKNOWN_TYPE: 7,
  BODY_TOO_SHORT: 8,
} as const;
export type FwpResultCode = (typeof FwpResult)[keyof typeof FwpResult];

export const FWP_RESULT_NAMES: readonly string[] = [
  'ok',
  'err_empty',
  'err_oversized',
  'err_cobs',
  'err_truncated',
  'err_crc',
  'err_version',
  'err_unknown_type',
  'err_body_short',
];

/**
 * One decoded frame. Fields of message types other than `type` keep stale
 * values; read only those belonging to the decoded type.
 */
export class FwpFrame {
  /** Decoded payload (header | body | crc). */
  readonly payload = new Uint8Array(COBS_MAX_PAYLOAD);
  payloadLen = 0;
  version = 0;
  type = 0;
  seq = 0;
  bodyLen = 0;

  // SAMPLE
  tUs = 0;
  flyTicks = 0;
  flyTickUs = 0;
  crankRevs = 0;
  crankEvt = 0;
  resistanceRaw = 0;
  hrBpm = 0;
  flags = 0;

  // STATUS
  uptimeS = 0;
  tempCentiC = 0;
  supplyMv = 0;
  faults = 0;
  boardDropped = 0;

  // HELLO (also the data of a RESPONSE to GET_HELLO)
  protoMinor = 0;
  fwMajor = 0;
  fwMinor = 0;
  fwPatch = 0;
  hwRev = 0;
  ticksPerRev = 0;
  sampleRateHz = 0;
  readonly serial = new Uint8Array(12);
  /** 1.1 (0 from a 1.0 board). */
  bootMode = 0;
  /** 1.1 (0 = not said, from a 1.0 board). */
  boardModel = 0;

  // FW_PROGRESS
  fwNext = 0;
  fwStatus = 0;
  fwFree = 0;

  // FW_CHUNK (data at dataOffset, dataLen)
  chunkOffset = 0;
  chunkCrc = 0;

  // RESPONSE
  reqSeq = 0;
  status = 0;
  /** Offset of RESPONSE data or LOG text within `payload`. */
  dataOffset = 0;
  dataLen = 0;

  // LOG
  level = 0;

  // REQUEST
  op = 0;
  arg = 0;
}

function u16(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}

function u32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

function i16(b: Uint8Array, o: number): number {
  return ((b[o] | (b[o + 1] << 8)) << 16) >> 16;
}

/** Parses HELLO fields at payload[o, o+len) into f (len >= 21; the 1.1 fields when len >= 24). */
function readHello(b: Uint8Array, o: number, len: number, f: FwpFrame): void {
  f.protoMinor = b[o];
  f.fwMajor = b[o + 1];
  f.fwMinor = b[o + 2];
  f.fwPatch = b[o + 3];
  f.hwRev = b[o + 4];
  f.ticksPerRev = u16(b, o + 5);
  f.sampleRateHz = u16(b, o + 7);
  for (let i = 0; i < 12; i++) f.serial[i] = b[o + 9 + i];
  f.bootMode = len >= HELLO_LEN_V1_1 ? b[o + 21] : 0;
  f.boardModel = len >= HELLO_LEN_V1_1 ? u16(b, o + 22) : 0;
}

/**
 * Decode one wire frame src[start, end) (delimiter excluded) into f.
 * Returns an FwpResult code.
 */
export function decodeFrame(src: Uint8Array, start: number, end: number, f: FwpFrame): FwpResultCode {
  const wireLen = end - start;
  if (wireLen === 0) return FwpResult.EMPTY;
  if (wireLen > COBS_MAX_ENCODED) return FwpResult.OVERSIZED;
  const n = cobsDecode(src, start, end, f.payload);
  if (n < 0) return FwpResult.BAD_COBS;
  f.payloadLen = n;
  if (n < HEADER_LEN + CRC_LEN) return FwpResult.TRUNCATED;
  const p = f.payload;
  const crcAt = n - CRC_LEN;
  if (crc16CcittFalse(p, 0, crcAt) !== u16(p, crcAt)) return FwpResult.BAD_CRC;
  f.version = p[0];
  f.type = p[1];
  f.seq = p[2];
  f.bodyLen = crcAt - HEADER_LEN;
  if (f.version !== FWP_VERSION) return FwpResult.BAD_VERSION;
  const o = HEADER_LEN;
  const len = f.bodyLen;
  switch (f.type) {
    case MsgType.SAMPLE:
      if (len < BodyLen.SAMPLE) return FwpResult.BODY_TOO_SHORT;
      f.tUs = u32(p, o);
      f.flyTicks = u32(p, o + 4);
      f.flyTickUs = u32(p, o + 8);
      f.crankRevs = u16(p, o + 12);
      f.crankEvt = u16(p, o + 14);
      f.resistanceRaw = u16(p, o + 16);
      f.hrBpm = p[o + 18];
      f.flags = p[o + 19];
      return FwpResult.OK;
    case MsgType.STATUS:
      if (len < BodyLen.STATUS) return FwpResult.BODY_TOO_SHORT;
      f.uptimeS = u32(p, o);
      f.tempCentiC = i16(p, o + 4);
      f.supplyMv = u16(p, o + 6);
      f.faults = u16(p, o + 8);
      f.boardDropped = u32(p, o + 10);
      return FwpResult.OK;
    case MsgType.HELLO:
      if (len < BodyLen.HELLO) return FwpResult.BODY_TOO_SHORT;
      readHello(p, o, len, f);
      return FwpResult.OK;
    case MsgType.RESPONSE:
      if (len < BodyLen.RESPONSE) return FwpResult.BODY_TOO_SHORT;
      f.reqSeq = p[o];
      f.status = p[o + 1];
      f.dataOffset = o + 2;
      f.dataLen = len - 2;
      return FwpResult.OK;
    case MsgType.LOG:
      if (len < BodyLen.LOG) return FwpResult.BODY_TOO_SHORT;
      f.level = p[o];
      f.dataOffset = o + 1;
      f.dataLen = len - 1;
      return FwpResult.OK;
    case MsgType.REQUEST:
      if (len < BodyLen.REQUEST) return FwpResult.BODY_TOO_SHORT;
      f.op = p[o];
      f.dataOffset = o + 1;
      f.dataLen = len - 1;
      f.arg = len >= 3 ? u16(p, o + 1) : 0;
      return FwpResult.OK;
    case MsgType.FW_PROGRESS:
      if (len < BodyLen.FW_PROGRESS) return FwpResult.BODY_TOO_SHORT;
      f.fwNext = u32(p, o);
      f.fwStatus = p[o + 4];
      f.fwFree = p[o + 5];
      return FwpResult.OK;
    case MsgType.FW_CHUNK:
      if (len < BodyLen.FW_CHUNK) return FwpResult.BODY_TOO_SHORT;
      f.chunkOffset = u32(p, o);
      f.chunkCrc = u32(p, o + 4);
      f.dataOffset = o + 8;
      f.dataLen = len - 8;
      return FwpResult.OK;
    default:
      return FwpResult.UNKNOWN_TYPE;
  }
}

/** Parse the HELLO layout carried as RESPONSE data (reply to GET_HELLO). */
export function readHelloFromResponse(f: FwpFrame): boolean {
  if (f.dataLen < BodyLen.HELLO) return false;
  readHello(f.payload, f.dataOffset, f.dataLen, f);
  return true;
}

/** The board serial as 24 hex digits (allocates; not for the hot path). */
export function serialHex(f: FwpFrame): string {
  return Buffer.from(f.serial).toString('hex');
}

/** LOG text (allocates; not for the hot path). */
export function logText(f: FwpFrame): string {
  return Buffer.from(f.payload.buffer, f.payload.byteOffset + f.dataOffset, f.dataLen).toString('utf8');
}

// ---------------------------------------------------------------------------
// Encoding. Used by the simulator, the request path and the vector generator;
// returns fresh Buffers because callers hand them to asynchronous writes.

export interface SampleFields {
  tUs: number;
  flyTicks: number;
  flyTickUs: number;
  crankRevs: number;
  crankEvt: number;
  resistanceRaw: number;
  hrBpm: number;
  flags: number;
}

export interface StatusFields {
  uptimeS: number;
  tempCentiC: number;
  supplyMv: number;
  faults: number;
  boardDropped: number;
}

export interface HelloFields {
  protoMinor: number;
  fwMajor: number;
  fwMinor: number;
  fwPatch: number;
  hwRev: number;
  ticksPerRev: number;
  sampleRateHz: number;
  /** 12 bytes. */
  serial: Uint8Array;
  /** 1.1: written when protoMinor >= 1 (a 1.0 board's HELLO ends at the serial). */
  bootMode?: number;
  boardModel?: number;
}

/** Writes little-endian fields into a growing body; one per encode. */
export class BodyWriter {
  readonly bytes = new Uint8Array(MAX_BODY + 64);
  len = 0;
  reset(): this {
    this.len = 0;
    return this;
  }
  u8(v: number): this {
    this.bytes[this.len++] = v & 0xff;
    return this;
  }
  u16(v: number): this {
    this.bytes[this.len++] = v & 0xff;
    this.bytes[this.len++] = (v >>> 8) & 0xff;
    return this;
  }
  i16(v: number): this {
    return this.u16(v & 0xffff);
  }
  u32(v: number): this {
    this.u16(v & 0xffff);
    return this.u16((v >>> 16) & 0xffff);
  }
  raw(b: Uint8Array): this {
    this.bytes.set(b, this.len);
    this.len += b.length;
    return this;
  }
}

export function writeSampleBody(w: BodyWriter, s: SampleFields): BodyWriter {
  return w
    .u32(s.tUs >>> 0)
    .u32(s.flyTicks >>> 0)
    .u32(s.flyTickUs >>> 0)
    .u16(s.crankRevs)
    .u16(s.crankEvt)
    .u16(s.resistanceRaw)
    .u8(s.hrBpm)
    .u8(s.flags);
}

export function writeStatusBody(w: BodyWriter, s: StatusFields): BodyWriter {
  return w
    .u32(s.uptimeS >>> 0)
    .i16(s.tempCentiC)
    .u16(s.supplyMv)
    .u16(s.faults)
    .u32(s.boardDropped >>> 0);
}

export function writeHelloBody(w: BodyWriter, h: HelloFields): BodyWriter {
  if (h.serial.length !== 12) throw new Error('board serial must be 12 bytes');
  w.u8(h.protoMinor).u8(h.fwMajor).u8(h.fwMinor).u8(h.fwPatch).u8(h.hwRev).u16(h.ticksPerRev).u16(h.sampleRateHz).raw(h.serial);
  if (h.protoMinor >= 1) w.u8(h.bootMode ?? 0).u16(h.boardModel ?? 0);
  return w;
}

const scratchPayload = new Uint8Array(COBS_MAX_PAYLOAD);

/**
 * Write one frame (COBS + 0x00) into dst at offset; returns the bytes written.
 * `version` is overridable only so tests can produce wrong-version frames.
 */
export function encodeFrameInto(
  type: number,
  seq: number,
  body: Uint8Array,
  bodyLen: number,
  dst: Uint8Array,
  offset: number,
  version: number = FWP_VERSION,
): number {
  if (bodyLen > MAX_BODY) throw new RangeError(`body of ${bodyLen} bytes exceeds the ${MAX_BODY}-byte maximum`);
  const payload = scratchPayload;
  payload[0] = version;
  payload[1] = type;
  payload[2] = seq & 0xff;
  payload.set(body.subarray(0, bodyLen), HEADER_LEN);
  const crcAt = HEADER_LEN + bodyLen;
  const crc = crc16CcittFalse(payload, 0, crcAt);
  payload[crcAt] = crc & 0xff;
  payload[crcAt + 1] = crc >>> 8;
  const n = cobsEncode(payload, 0, crcAt + CRC_LEN, dst, offset);
  dst[offset + n] = 0;
  return n + 1;
}

/** The wire bytes (COBS + 0x00) of one frame, in a fresh Buffer. */
export function encodeFrame(
  type: number,
  seq: number,
  body: Uint8Array,
  bodyLen: number = body.length,
  version: number = FWP_VERSION,
): Buffer {
  const out = Buffer.alloc(MAX_WIRE_FRAME);
  const n = encodeFrameInto(type, seq, body, bodyLen, out, 0, version);
  return Buffer.from(out.subarray(0, n));
}

/** A REQUEST frame; `arg` a u16 argument or the argument bytes (the FW_* ops). */
export function encodeRequest(seq: number, op: number, arg?: number | Uint8Array): Buffer {
  const w = new BodyWriter().u8(op);
  if (typeof arg === 'number') w.u16(arg);
  else if (arg !== undefined) w.raw(arg);
  return encodeFrame(MsgType.REQUEST, seq, w.bytes, w.len);
}
