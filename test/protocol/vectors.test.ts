import { describe, expect, it } from 'vitest';
import {
  BodyWriter,
  FWP_RESULT_NAMES,
  FwpFrame,
  MsgType,
  decodeFrame,
  encodeFrame,
  writeHelloBody,
  writeSampleBody,
  writeStatusBody,
} from '../../src/protocol/fwp/codec.js';
import { writeFwProgress } from '../../src/protocol/fwp/fwu.js';
import { loadVectors } from '../helpers/vectors.js';

const vectors = loadVectors();
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Decoded value of a vector key, written the way the vector file writes it. */
function field(f: FwpFrame, key: string): string | undefined {
  const body = (o: number, n: number) => hex(f.payload.subarray(o, o + n));
  const common: Record<string, number> = { version: f.version, type: f.type, seq: f.seq, body_len: f.bodyLen };
  if (key in common) return String(common[key]);
  const byType: Record<number, Record<string, string | number>> = {
    [MsgType.SAMPLE]: {
      t_us: f.tUs,
      fly_ticks: f.flyTicks,
      fly_tick_us: f.flyTickUs,
      crank_revs: f.crankRevs,
      crank_evt: f.crankEvt,
      resistance_raw: f.resistanceRaw,
      hr_bpm: f.hrBpm,
      flags: f.flags,
    },
    [MsgType.STATUS]: {
      uptime_s: f.uptimeS,
      temp_centi_c: f.tempCentiC,
      supply_mv: f.supplyMv,
      faults: f.faults,
      board_dropped: f.boardDropped,
    },
    [MsgType.HELLO]: {
      proto_minor: f.protoMinor,
      fw_major: f.fwMajor,
      fw_minor: f.fwMinor,
      fw_patch: f.fwPatch,
      hw_rev: f.hwRev,
      ticks_per_rev: f.ticksPerRev,
      sample_rate_hz: f.sampleRateHz,
      serial: hex(f.serial),
      boot_mode: f.bootMode,
      board_model: f.boardModel,
    },
    [MsgType.RESPONSE]: { req_seq: f.reqSeq, status: f.status, data: body(f.dataOffset, f.dataLen) },
    [MsgType.LOG]: { level: f.level, text: body(f.dataOffset, f.dataLen) },
    [MsgType.REQUEST]: { op: f.op, data: body(f.dataOffset, f.dataLen) },
    [MsgType.FW_PROGRESS]: { next: f.fwNext, status: f.fwStatus, free: f.fwFree },
    [MsgType.FW_CHUNK]: { offset: f.chunkOffset, crc32: f.chunkCrc, data: body(f.dataOffset, f.dataLen) },
  };
  const v = byType[f.type]?.[key];
  return v === undefined ? undefined : String(v);
}

/** Re-encode a decoded frame from its fields with the agent's writers. */
function reencode(f: FwpFrame, tail: Buffer): Buffer {
  const w = new BodyWriter();
  const data = () => f.payload.subarray(f.dataOffset, f.dataOffset + f.dataLen);
  switch (f.type) {
    case MsgType.SAMPLE:
      writeSampleBody(w, f);
      break;
    case MsgType.STATUS:
      writeStatusBody(w, f);
      break;
    case MsgType.HELLO:
      writeHelloBody(w, f);
      break;
    case MsgType.RESPONSE:
      w.u8(f.reqSeq).u8(f.status).raw(data());
      break;
    case MsgType.LOG:
      w.u8(f.level).raw(data());
      break;
    case MsgType.REQUEST:
      w.u8(f.op).raw(data());
      break;
    case MsgType.FW_PROGRESS:
      writeFwProgress(w, f.fwNext, f.fwStatus, f.fwFree);
      break;
    // The crc32 as received: a vector may carry a wrong one on purpose (the board's receiver refuses it).
    case MsgType.FW_CHUNK:
      w.u32(f.chunkOffset).u32(f.chunkCrc).raw(data());
      break;
  }
  w.raw(tail);
  return encodeFrame(f.type, f.seq, w.bytes, w.len);
}

describe('golden vectors (firmware-protocol/vectors/fwp-v1.vec)', () => {
  it('cover what SPEC.md promises: >= 30 frames, every type, longer bodies, wraps, every error', () => {
    expect(vectors.length).toBeGreaterThanOrEqual(30);
    const ok = vectors.filter((v) => v.result === 'ok');
    for (const t of Object.values(MsgType)) expect(ok.some((v) => Number(v.type) === t)).toBe(true);
    expect(ok.filter((v) => v.tail).length).toBeGreaterThanOrEqual(2);
    expect(ok.some((v) => v.t_us === '4294967280')).toBe(true);
    expect(ok.some((v) => v.crank_revs === '65535')).toBe(true);
    // 1.1: HELLO of the application and of the bootloader, the largest chunk (payload 254 bytes).
    expect(ok.some((v) => v.boot_mode === '0' && v.board_model !== undefined)).toBe(true);
    expect(ok.some((v) => v.boot_mode === '1')).toBe(true);
    expect(ok.some((v) => Number(v.type) === MsgType.FW_CHUNK && v.data.length === 241 * 2)).toBe(true);
    for (const e of FWP_RESULT_NAMES.slice(1))
      expect(
        vectors.some((v) => v.result === e),
        e,
      ).toBe(true);
  });

  for (const v of vectors) {
    it(`${v.name}: decodes to ${v.result}${v.result === 'ok' ? ' with every field, and re-encodes to the same bytes' : ''}`, () => {
      const wire = Buffer.from(v.wire, 'hex');
      expect(wire[wire.length - 1]).toBe(0);
      const f = new FwpFrame();
      const r = decodeFrame(wire, 0, wire.length - 1, f);
      expect(FWP_RESULT_NAMES[r]).toBe(v.result);
      if (v.result !== 'ok') return;
      for (const [k, val] of Object.entries(v)) {
        if (['name', 'wire', 'result', 'tail'].includes(k)) continue;
        expect(field(f, k), k).toBe(val);
      }
      expect(hex(reencode(f, Buffer.from(v.tail ?? '', 'hex')))).toBe(v.wire);
    });
  }
});
