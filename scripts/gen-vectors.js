#!/usr/bin/env node
// Regenerates firmware-protocol/vectors/fwp-v1.vec from the definitions below
// using the agent's encoder. The C reference codec checks the result
// independently (test/protocol/c-codec.test.ts), so an encoder bug cannot
// hide in both. Run: npm run build && npm run vectors
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BodyWriter, MsgType, encodeFrame, writeHelloBody, writeSampleBody, writeStatusBody } from '../dist/protocol/fwp/codec.js';
import { crc16CcittFalse } from '../dist/protocol/fwp/crc16.js';
import { cobsEncode } from '../dist/protocol/fwp/cobs.js';
import { crc32 } from '../dist/protocol/fwp/crc32.js';
import { writeFwBegin, writeFwInfo, writeFwProgress, writeFwResume } from '../dist/protocol/fwp/fwu.js';
import { generateFwuVectors } from './gen-fwu-vectors.js';

const hex = (b) => Buffer.from(b).toString('hex');
const out = [];
const add = (name, wire, fields) => out.push({ name, wire: hex(wire), ...fields });

function bodyOk(name, type, seq, fields, writeBody, tail = Buffer.alloc(0)) {
  const w = new BodyWriter();
  writeBody(w);
  w.raw(tail);
  const wire = encodeFrame(type, seq, w.bytes, w.len);
  add(name, wire, { result: 'ok', version: 1, type, seq, body_len: w.len, ...fields, ...(tail.length ? { tail: hex(tail) } : {}) });
}

const sampleKeys = (s) => ({
  t_us: s.tUs,
  fly_ticks: s.flyTicks,
  fly_tick_us: s.flyTickUs,
  crank_revs: s.crankRevs,
  crank_evt: s.crankEvt,
  resistance_raw: s.resistanceRaw,
  hr_bpm: s.hrBpm,
  flags: s.flags,
});
function sample(name, seq, s, tail) {
  bodyOk(name, MsgType.SAMPLE, seq, sampleKeys(s), (w) => writeSampleBody(w, s), tail);
}
const S = (o) => ({
  tUs: 1_000_000,
  flyTicks: 1234,
  flyTickUs: 995_000,
  crankRevs: 42,
  crankEvt: 1000,
  resistanceRaw: 1450,
  hrBpm: 128,
  flags: 0x08,
  ...o,
});

sample('sample_basic', 7, S({}));
sample('sample_all_zero', 0, S({ tUs: 0, flyTicks: 0, flyTickUs: 0, crankRevs: 0, crankEvt: 0, resistanceRaw: 0, hrBpm: 0, flags: 0 }));
sample(
  'sample_all_max',
  255,
  S({
    tUs: 0xffffffff,
    flyTicks: 0xffffffff,
    flyTickUs: 0xffffffff,
    crankRevs: 0xffff,
    crankEvt: 0xffff,
    resistanceRaw: 4095,
    hrBpm: 255,
    flags: 0x0f,
  }),
);
sample('sample_t_us_before_wrap', 10, S({ tUs: 0xfffffff0, flyTickUs: 0xffffff00 }));
sample('sample_t_us_after_wrap', 11, S({ tUs: 0x00004e10, flyTickUs: 0xffffff00 }));
sample('sample_fly_ticks_wrap', 12, S({ flyTicks: 0xffffffff }));
sample('sample_fly_ticks_wrapped', 13, S({ flyTicks: 0x00000003 }));
sample('sample_crank_wrap', 14, S({ crankRevs: 0xffff, crankEvt: 0xfc00 }));
sample('sample_crank_wrapped', 15, S({ crankRevs: 0x0000, crankEvt: 0x0155 }));
sample('sample_hr_none', 16, S({ hrBpm: 0, flags: 0 }));
sample('sample_faults', 17, S({ flags: 0x07 }));
sample('sample_longer_body', 18, S({}), Buffer.from([0x01, 0x02, 0x00, 0x04]));

const status = (name, seq, s, tail) =>
  bodyOk(
    name,
    MsgType.STATUS,
    seq,
    { uptime_s: s.uptimeS, temp_centi_c: s.tempCentiC, supply_mv: s.supplyMv, faults: s.faults, board_dropped: s.boardDropped },
    (w) => writeStatusBody(w, s),
    tail,
  );
status('status_basic', 20, { uptimeS: 3600, tempCentiC: 3650, supplyMv: 12010, faults: 0, boardDropped: 0 });
status('status_negative_temperature', 21, { uptimeS: 86400, tempCentiC: -1234, supplyMv: 11800, faults: 0, boardDropped: 3 });
status('status_faults', 22, { uptimeS: 0xffffffff, tempCentiC: 8512, supplyMv: 10500, faults: 0x001b, boardDropped: 0xffffffff });
status('status_longer_body', 23, { uptimeS: 5, tempCentiC: 2500, supplyMv: 12000, faults: 0, boardDropped: 0 }, Buffer.from([0xaa, 0xbb]));

const helloFields = (h) => ({
  proto_minor: h.protoMinor,
  fw_major: h.fwMajor,
  fw_minor: h.fwMinor,
  fw_patch: h.fwPatch,
  hw_rev: h.hwRev,
  ticks_per_rev: h.ticksPerRev,
  sample_rate_hz: h.sampleRateHz,
  serial: hex(h.serial),
  ...(h.protoMinor >= 1 ? { boot_mode: h.bootMode, board_model: h.boardModel } : {}),
});
const H = {
  protoMinor: 0,
  fwMajor: 1,
  fwMinor: 4,
  fwPatch: 2,
  hwRev: 3,
  ticksPerRev: 8,
  sampleRateHz: 50,
  serial: Buffer.from('FWB2401A0042', 'ascii'),
};
bodyOk('hello_basic', MsgType.HELLO, 0, helloFields(H), (w) => writeHelloBody(w, H));
const H11 = { ...H, protoMinor: 1, bootMode: 0, boardModel: 7 };
bodyOk('hello_v1_1_application', MsgType.HELLO, 0, helloFields(H11), (w) => writeHelloBody(w, H11));
const H11b = { ...H, protoMinor: 1, fwMajor: 1, fwMinor: 0, fwPatch: 0, ticksPerRev: 0, sampleRateHz: 0, bootMode: 1, boardModel: 0x1234 };
bodyOk('hello_v1_1_bootloader', MsgType.HELLO, 0, helloFields(H11b), (w) => writeHelloBody(w, H11b));
const H2 = { ...H, protoMinor: 2, sampleRateHz: 100, serial: Buffer.from('000102030405060708090a0b', 'hex'), bootMode: 0, boardModel: 3 };
bodyOk('hello_longer_body_minor_2', MsgType.HELLO, 0, helloFields(H2), (w) => writeHelloBody(w, H2), Buffer.from([0x10, 0x00, 0x20]));

const response = (name, seq, reqSeq, st, data) =>
  bodyOk(name, MsgType.RESPONSE, seq, { req_seq: reqSeq, status: st, data: hex(data) }, (w) => w.u8(reqSeq).u8(st).raw(data));
response('response_ok_no_data', 30, 4, 0, Buffer.alloc(0));
const hb = new BodyWriter();
writeHelloBody(hb, H);
response('response_get_hello', 31, 0, 0, Buffer.from(hb.bytes.subarray(0, hb.len)));
response('response_set_sample_rate', 32, 1, 0, Buffer.from([100, 0]));
response('response_unknown_op', 33, 2, 1, Buffer.alloc(0));
response('response_bad_argument', 34, 3, 2, Buffer.alloc(0));

const log = (name, seq, level, text) =>
  bodyOk(name, MsgType.LOG, seq, { level, text: hex(Buffer.from(text, 'utf8')) }, (w) => w.u8(level).raw(Buffer.from(text, 'utf8')));
log('log_info', 40, 1, 'flywheel sensor calibrated');
log('log_utf8', 41, 2, 'température élevée: 71 °C ✓');
log('log_empty_text', 42, 0, '');
log('log_max_payload', 43, 3, 'E'.repeat(248)); // body 249 bytes: payload 254, the largest frame

const request = (name, seq, op, data) => bodyOk(name, MsgType.REQUEST, seq, { op, data: hex(data) }, (w) => w.u8(op).raw(data));
request('request_get_hello', 0, 0x01, Buffer.alloc(0));
request('request_set_sample_rate', 1, 0x02, Buffer.from([100, 0]));
request('request_zero_resistance', 2, 0x03, Buffer.alloc(0));
request('request_reboot', 3, 0x04, Buffer.alloc(0));

// 1.1: firmware update (SPEC.md section 11).
request('request_enter_bootloader', 4, 0x05, Buffer.alloc(0));
request('request_fw_info', 5, 0x10, Buffer.alloc(0));
const sha = Buffer.from('9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08', 'hex');
const beginArgs = (a) => {
  const w = new BodyWriter();
  writeFwBegin(w, a);
  return Buffer.from(w.bytes.subarray(0, w.len));
};
request('request_fw_begin', 6, 0x11, beginArgs({ size: 262144, sha256: sha, version: [1, 2, 0], boardModel: 7, flags: 0 }));
request(
  'request_fw_begin_allow_downgrade',
  7,
  0x11,
  beginArgs({ size: 600, sha256: sha, version: [0, 9, 255], boardModel: 0xfffe, flags: 1 }),
);
request('request_fw_verify', 8, 0x12, Buffer.alloc(0));
request('request_fw_test_boot', 9, 0x13, Buffer.from([30, 0]));
request('request_fw_confirm', 10, 0x14, Buffer.alloc(0));
request('request_fw_abort', 11, 0x15, Buffer.alloc(0));
const bw = (fn) => {
  const w = new BodyWriter();
  fn(w);
  return Buffer.from(w.bytes.subarray(0, w.len));
};
response(
  'response_fw_info',
  35,
  5,
  0,
  bw((w) =>
    writeFwInfo(w, {
      bootMode: 1,
      activeSlot: 0,
      boardModel: 7,
      slotSize: 524288,
      maxChunk: 240,
      window: 8,
      xferState: 1,
      xferSize: 262144,
      xferNext: 122880,
      xferSha256: sha,
      xferVersion: [1, 2, 0],
      xferSlot: 1,
      slots: [
        { state: 1, version: [1, 1, 3] },
        { state: 2, version: [1, 2, 0] },
      ],
    }),
  ),
);
response(
  'response_fw_begin_resume',
  36,
  6,
  0,
  bw((w) => writeFwResume(w, { next: 122880, maxChunk: 240, window: 8 })),
);
response('response_fw_begin_refused_model', 37, 6, 2, Buffer.from([2]));
response('response_wrong_mode', 38, 6, 5, Buffer.alloc(0));
const progress = (name, seq, next, st, free) =>
  bodyOk(name, MsgType.FW_PROGRESS, seq, { next, status: st, free }, (w) => writeFwProgress(w, next, st, free));
progress('fw_progress_ok', 50, 122880, 0, 7);
progress('fw_progress_out_of_order', 51, 123120, 2, 8);
progress('fw_progress_bad_check', 52, 0xfffffff0, 1, 0);
const chunk = (name, seq, offset, data, crc = crc32(data, 0, data.length)) =>
  bodyOk(name, MsgType.FW_CHUNK, seq, { offset, crc32: crc, data: hex(data) }, (w) => w.u32(offset).u32(crc).raw(data));
chunk('fw_chunk_small', 12, 0, Buffer.from('firmware', 'ascii'));
chunk('fw_chunk_zeros', 13, 240, Buffer.alloc(16));
chunk('fw_chunk_max', 14, 262080, Buffer.from(Array.from({ length: 241 }, (_, i) => (i * 7 + 1) & 0xff)));
chunk('fw_chunk_wrong_crc32', 15, 480, Buffer.from([1, 2, 3]), 0xdeadbeef); // decodes; the board's receiver refuses it (bad_check)

// Invalid frames: the bytes a receiver sees between delimiters, and the error it must report.
function rawPayload(bytes) {
  const p = Uint8Array.from(bytes);
  const wire = Buffer.alloc(p.length + 2);
  const n = cobsEncode(p, 0, p.length, wire, 0);
  return wire.subarray(0, n + 1);
}
function withCrc(bytes) {
  const p = Uint8Array.from([...bytes, 0, 0]);
  const c = crc16CcittFalse(p, 0, p.length - 2);
  p[p.length - 2] = c & 0xff;
  p[p.length - 1] = c >>> 8;
  return p;
}
const good = Buffer.from(out[0].wire, 'hex');
{
  // Flip the CRC's low byte inside the decoded payload, re-encode.
  const w = new BodyWriter();
  writeSampleBody(w, S({}));
  const p = withCrc([1, MsgType.SAMPLE, 7, ...w.bytes.subarray(0, w.len)]);
  p[p.length - 2] ^= 0xff;
  add('err_crc', rawPayload(p), { result: 'err_crc' });
  const q = withCrc([1, MsgType.SAMPLE, 7, ...w.bytes.subarray(0, w.len)]);
  q[5] ^= 0x01; // a data bit flipped in transit
  add('err_crc_data_bit', rawPayload(q), { result: 'err_crc' });
}
add('err_truncated_header_only', rawPayload([1, 1, 7, 0x12]), { result: 'err_truncated' });
add('err_cobs_cut_frame', Buffer.concat([good.subarray(0, 9), Buffer.from([0])]), { result: 'err_cobs' });
// Cut at a COBS block boundary: the block structure is intact, the CRC is not.
add('err_crc_cut_at_block', Buffer.concat([good.subarray(0, 7), Buffer.from([0])]), { result: 'err_crc' });
add('err_oversized', Buffer.concat([Buffer.alloc(256, 0x55), Buffer.from([0])]), { result: 'err_oversized' });
add('err_cobs_overrun', Buffer.from([0x09, 0x01, 0x01, 0x07, 0x00]), { result: 'err_cobs' });
add('err_cobs_overrun_last_block', Buffer.from([0x02, 0x01, 0x05, 0x07, 0x09, 0x00]), { result: 'err_cobs' });
add('err_version_2', rawPayload(withCrc([2, 1, 7, ...Buffer.alloc(20, 1)])), { result: 'err_version' });
add('err_version_0', rawPayload(withCrc([0, 1, 7, ...Buffer.alloc(20, 1)])), { result: 'err_version' });
add('err_unknown_type', rawPayload(withCrc([1, 0x7f, 9, 1, 2, 3])), { result: 'err_unknown_type' });
add('err_body_short_sample', rawPayload(withCrc([1, 1, 7, ...Buffer.alloc(19, 1)])), { result: 'err_body_short' });
add('err_body_short_hello', rawPayload(withCrc([1, 3, 0, ...Buffer.alloc(20, 1)])), { result: 'err_body_short' });
add('err_body_short_response', rawPayload(withCrc([1, 4, 0, 5])), { result: 'err_body_short' });
add('err_body_short_fw_progress', rawPayload(withCrc([1, 6, 0, 1, 2, 3, 4, 0])), { result: 'err_body_short' });
add('err_body_short_fw_chunk', rawPayload(withCrc([1, 0x82, 0, 1, 2, 3, 4, 5, 6, 7])), { result: 'err_body_short' });
add('empty_frame', Buffer.from([0]), { result: 'err_empty' });

const header = `# fwp v1 golden vectors (firmware-protocol/SPEC.md section 8). Generated by scripts/gen-vectors.js.
# One vector per line: space-separated key=value pairs. Integers are decimal; byte strings are hex.
# wire    = bytes on the wire in hex, including the trailing 00 delimiter; decode what precedes it.
# result  = ok, or the error a receiver must report for it.
# For ok vectors every other key is a decoded field; "tail" is body bytes beyond the known layout,
# which a receiver ignores and an encoder appends to reproduce the wire bytes.
`;
const lines = out.map((v) =>
  Object.entries(v)
    .map(([k, val]) => `${k}=${val}`)
    .join(' '),
);
const file = fileURLToPath(new URL('../firmware-protocol/vectors/fwp-v1.vec', import.meta.url));
writeFileSync(file, header + lines.join('\n') + '\n');
console.log(`${out.length} vectors written to ${file}`);
const fwu = generateFwuVectors();
const fwuFile = fileURLToPath(new URL('../firmware-protocol/vectors/fwu-v1.vec', import.meta.url));
writeFileSync(fwuFile, fwu.text);
console.log(`${fwu.steps} firmware-update steps in ${fwu.scripts} scripts written to ${fwuFile}`);
