/**
 * fwp 1.1 firmware update: the layouts of FW_* request arguments and
 * response data, FW_CHUNK and FW_PROGRESS bodies (SPEC.md section 11). Shared
 * by the agent's transfer, the simulated bootloader and the vector
 * generator; the C reference (firmware-protocol/c/fwu.c) mirrors it.
 * Not on the sample path: these allocate freely.
 */
import { crc32 } from './crc32.js';
import { BodyWriter, MAX_BODY } from './codec.js';

/** FW_CHUNK body: u32 offset, u32 crc32(data), data. */
export const CHUNK_HEADER = 8;
/** The most data one FW_CHUNK can carry (the body limit less its header). */
export const MAX_CHUNK_DATA = MAX_BODY - CHUNK_HEADER;

/** FW_PROGRESS status. */
export const ProgressStatus = {
  /** The chunk was written; `next` moved past it. */
  OK: 0,
  /** Its crc32 did not match its data: dropped. */
  BAD_CHECK: 1,
  /** Not at `next` (a chunk before it was lost): dropped, reported once per gap. */
  OUT_OF_ORDER: 2,
  /** Flash could not be written. */
  FLASH_ERROR: 3,
  /** No transfer is open (FW_BEGIN first). */
  NO_TRANSFER: 4,
  /** Longer than the board's max_chunk, or past the image's end. */
  BAD_CHUNK: 5,
} as const;
export const PROGRESS_STATUS_NAMES = ['ok', 'bad_check', 'out_of_order', 'flash_error', 'no_transfer', 'bad_chunk'] as const;

/** The transfer record's state (FW_INFO xfer_state). */
export const XferState = { NONE: 0, RECEIVING: 1, VERIFIED: 2, TESTING: 3, CONFIRMED: 4, REJECTED: 5 } as const;
export const XFER_STATE_NAMES = ['none', 'receiving', 'verified', 'testing', 'confirmed', 'rejected'] as const;
export type XferStateName = (typeof XFER_STATE_NAMES)[number];

/** A slot's state (FW_INFO). */
export const SlotState = { EMPTY: 0, VALID: 1, INVALID: 2 } as const;
export const SLOT_STATE_NAMES = ['empty', 'valid', 'invalid'] as const;

/** BAD_ARGUMENT reasons carried as FW_BEGIN's response data. */
export const BeginRefusal = { SIZE: 1, MODEL: 2, DOWNGRADE: 3 } as const;

export type FwVersion = readonly [number, number, number];

export const versionText = (v: FwVersion): string => `${v[0]}.${v[1]}.${v[2]}`;

export function parseFwVersion(s: string): FwVersion | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  const v = [Number(m[1]), Number(m[2]), Number(m[3])] as const;
  return v.every((x) => x <= 255) ? v : null;
}

export function compareFwVersions(a: FwVersion, b: FwVersion): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

export interface FwSlot {
  state: number;
  version: FwVersion;
}

/** FW_INFO response data, 64 bytes. */
export interface FwInfo {
  bootMode: number;
  activeSlot: number;
  boardModel: number;
  slotSize: number;
  maxChunk: number;
  window: number;
  xferState: number;
  xferSize: number;
  xferNext: number;
  /** 32 bytes. */
  xferSha256: Uint8Array;
  xferVersion: FwVersion;
  xferSlot: number;
  slots: [FwSlot, FwSlot];
}
export const FW_INFO_LEN = 64;

const u16 = (b: Uint8Array, o: number): number => b[o] | (b[o + 1] << 8);
const u32 = (b: Uint8Array, o: number): number => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
const ver = (b: Uint8Array, o: number): FwVersion => [b[o], b[o + 1], b[o + 2]];

export function writeFwInfo(w: BodyWriter, i: FwInfo): BodyWriter {
  w.u8(i.bootMode).u8(i.activeSlot).u16(i.boardModel).u32(i.slotSize).u16(i.maxChunk).u8(i.window).u8(i.xferState);
  w.u32(i.xferSize).u32(i.xferNext).raw(i.xferSha256).u8(i.xferVersion[0]).u8(i.xferVersion[1]).u8(i.xferVersion[2]).u8(i.xferSlot);
  for (const s of i.slots) w.u8(s.state).u8(s.version[0]).u8(s.version[1]).u8(s.version[2]);
  return w;
}

/** Parse FW_INFO data; null when shorter than the layout (longer is fine: later minors append). */
export function readFwInfo(b: Uint8Array): FwInfo | null {
  if (b.length < FW_INFO_LEN) return null;
  return {
    bootMode: b[0],
    activeSlot: b[1],
    boardModel: u16(b, 2),
    slotSize: u32(b, 4),
    maxChunk: u16(b, 8),
    window: b[10],
    xferState: b[11],
    xferSize: u32(b, 12),
    xferNext: u32(b, 16),
    xferSha256: Uint8Array.from(b.subarray(20, 52)),
    xferVersion: ver(b, 52),
    xferSlot: b[55],
    slots: [
      { state: b[56], version: ver(b, 57) },
      { state: b[60], version: ver(b, 61) },
    ],
  };
}

/** FW_BEGIN arguments (after the op byte), 42 bytes. */
export interface FwBegin {
  size: number;
  /** 32 bytes. */
  sha256: Uint8Array;
  version: FwVersion;
  boardModel: number;
  /** 1: the console's signed image allows installing an older version. */
  flags: number;
}
export const FW_BEGIN_LEN = 42;
export const BeginFlag = { ALLOW_DOWNGRADE: 1 } as const;

export function writeFwBegin(w: BodyWriter, a: FwBegin): BodyWriter {
  return w.u32(a.size).raw(a.sha256).u8(a.version[0]).u8(a.version[1]).u8(a.version[2]).u16(a.boardModel).u8(a.flags);
}

export function readFwBegin(b: Uint8Array): FwBegin | null {
  if (b.length < FW_BEGIN_LEN) return null;
  return { size: u32(b, 0), sha256: Uint8Array.from(b.subarray(4, 36)), version: ver(b, 36), boardModel: u16(b, 39), flags: b[41] };
}

/** FW_BEGIN's OK data (and FW_VERIFY's BUSY data): where to send from, and how. */
export interface FwResume {
  next: number;
  maxChunk: number;
  window: number;
}
export const FW_RESUME_LEN = 7;

export function writeFwResume(w: BodyWriter, r: FwResume): BodyWriter {
  return w.u32(r.next).u16(r.maxChunk).u8(r.window);
}

export function readFwResume(b: Uint8Array): FwResume | null {
  if (b.length < FW_RESUME_LEN) return null;
  return { next: u32(b, 0), maxChunk: u16(b, 4), window: b[6] };
}

/** FW_CHUNK body for data[from, from+len) of the image at `offset`. */
export function writeFwChunk(w: BodyWriter, offset: number, image: Uint8Array, from: number, len: number): BodyWriter {
  const data = image.subarray(from, from + len);
  return w
    .u32(offset)
    .u32(crc32(data, 0, data.length))
    .raw(data);
}

export function writeFwProgress(w: BodyWriter, next: number, status: number, free: number): BodyWriter {
  return w.u32(next).u8(status).u8(free);
}

/** FW_TEST_BOOT argument: seconds the new image has to be confirmed before the board reverts. */
export const TEST_BOOT_DEADLINE_MIN_S = 5;
export const TEST_BOOT_DEADLINE_MAX_S = 600;
