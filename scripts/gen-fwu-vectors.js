// Conversation vectors for the board's firmware-update receiver
// (firmware-protocol/vectors/fwu-v1.vec, SPEC.md section 11.9): scripts of
// frames into the board and the exact frames it must answer, plus resets,
// torn writes and the boot decision. Generated with the simulator's receiver
// (src/sim/fwu-receiver.ts); the C reference (c/fwu.c) replays them in
// c/test_fwu.c. Called by gen-vectors.js.
import { createHash } from 'node:crypto';
import { BodyWriter, MsgType, RequestOp, decodeFrame, encodeFrame, FwpFrame, FwpResult } from '../dist/protocol/fwp/codec.js';
import { crc32 } from '../dist/protocol/fwp/crc32.js';
import { writeFwBegin, writeFwProgress } from '../dist/protocol/fwp/fwu.js';
import { FwuReceiver, freshMeta } from '../dist/sim/fwu-receiver.js';
import { RamFlash } from '../dist/sim/ram-flash.js';

/** The geometry the C harness builds too (c/test_fwu.c). */
export const GEOMETRY = { slotSize: 4096, sectorSize: 1024, maxChunk: 64, window: 4, boardModel: 7, factory: [1, 0, 0] };

const hex = (b) => Buffer.from(b).toString('hex');

function image(size, seed) {
  const b = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

class Script {
  constructor(name, lines) {
    this.name = name;
    this.lines = lines;
    this.step = 0;
    this.flash = new RamFlash(GEOMETRY.slotSize, GEOMETRY.sectorSize);
    this.meta = freshMeta(GEOMETRY.factory);
    this.rx = new FwuReceiver(
      { boardModel: GEOMETRY.boardModel, maxChunk: GEOMETRY.maxChunk, window: GEOMETRY.window },
      this.flash,
      this.meta,
    );
    this.txSeq = 0; // console's
    this.boardSeq = 0; // board's, restarts at each reset
    this.frame = new FwpFrame();
  }

  emit(kv) {
    this.lines.push(
      `script=${this.name} step=${this.step++} ${Object.entries(kv)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`,
    );
  }

  /** A frame into the board; records what it answers. */
  send(type, body) {
    const wire = encodeFrame(type, this.txSeq, body, body.length);
    this.txSeq = (this.txSeq + 1) & 0xff;
    const f = this.frame;
    if (decodeFrame(wire, 0, wire.length - 1, f) !== FwpResult.OK) throw new Error('bad frame');
    let reply = null;
    if (type === MsgType.REQUEST) {
      const data = new BodyWriter();
      const status = this.rx.request(f.op, f.payload.subarray(f.dataOffset, f.dataOffset + f.dataLen), data);
      if (status < 0) throw new Error('not an update op');
      const w = new BodyWriter().u8(f.seq).u8(status).raw(data.bytes.subarray(0, data.len));
      reply = encodeFrame(MsgType.RESPONSE, this.boardSeq, w.bytes, w.len);
    } else {
      const data = f.payload.subarray(f.dataOffset, f.dataOffset + f.dataLen);
      const status = this.rx.chunk(f.chunkOffset, f.chunkCrc, Buffer.from(data));
      if (status >= 0) {
        const w = writeFwProgress(new BodyWriter(), this.rx.next, status, GEOMETRY.window);
        reply = encodeFrame(MsgType.FW_PROGRESS, this.boardSeq, w.bytes, w.len);
      }
    }
    if (reply) this.boardSeq = (this.boardSeq + 1) & 0xff;
    this.emit({ in: hex(wire), out: reply ? hex(reply) : '-' });
  }

  request(op, args = Buffer.alloc(0)) {
    this.send(MsgType.REQUEST, Buffer.concat([Buffer.from([op]), args]));
  }

  chunk(img, offset, len, { crc } = {}) {
    const data = img.subarray(offset, offset + len);
    const w = new BodyWriter()
      .u32(offset)
      .u32(crc ?? crc32(data, 0, data.length))
      .raw(data);
    this.send(MsgType.FW_CHUNK, Buffer.from(w.bytes.subarray(0, w.len)));
  }

  chunks(img, from, to) {
    for (let o = from; o < to; o += GEOMETRY.maxChunk) this.chunk(img, o, Math.min(GEOMETRY.maxChunk, to - o));
  }

  begin(img, version, { model = GEOMETRY.boardModel, flags = 0, size = img.length, sha = createHash('sha256').update(img).digest() } = {}) {
    const w = writeFwBegin(new BodyWriter(), { size, sha256: sha, version, boardModel: model, flags });
    this.request(RequestOp.FW_BEGIN, Buffer.from(w.bytes.subarray(0, w.len)));
  }

  /** A reset (stay = ENTER_BOOTLOADER's flag); the vector says what the bootloader chose. */
  reset(stay) {
    const c = this.rx.boot(stay);
    this.boardSeq = 0;
    this.emit({ reset: stay ? 1 : 0, boot: c.mode, slot: c.slot, trial: c.trial ? 1 : 0 });
  }

  /** Power lost while writing: `len` bytes of 0x00 at the next offset, not counted (the receiver must notice). */
  tear(len) {
    const x = this.meta.xfer;
    this.flash.program(x.slot, x.next, Buffer.alloc(len, 0));
    this.emit({ tear: len });
  }
}

export function generateFwuVectors() {
  const lines = [];
  const img = image(600, 1); // 10 chunks: 9 of 64 bytes, one of 24
  const img2 = image(3000, 2); // spans three 1 KiB sectors

  // A whole update: info, begin, chunks with a corrupted and a lost one, verify, test boot, confirm.
  {
    const s = new Script('update', lines);
    s.reset(false);
    s.request(RequestOp.FW_INFO);
    s.request(RequestOp.FW_BEGIN); // app mode: FW_BEGIN needs the bootloader (no args: WRONG_MODE first)
    s.request(RequestOp.ENTER_BOOTLOADER);
    s.reset(true);
    s.begin(img, [1, 1, 0]);
    s.chunks(img, 0, 128);
    s.chunk(img, 128, 64, { crc: 0x12345678 }); // corrupted: bad_check
    s.chunk(img, 192, 64); // after the gap: dropped silently (the gap was reported)
    s.chunks(img, 128, 384);
    s.chunk(img, 448, 64); // 384 lost: out_of_order
    s.chunk(img, 512, 64); // silent
    s.chunk(img, 0, 64); // a repeat: acknowledged with next
    s.request(RequestOp.FW_VERIFY); // not all there: BUSY + resume point
    s.chunks(img, 384, 600);
    s.chunk(Buffer.concat([img, Buffer.alloc(64, 0xee)]), 576, 30); // past the end: bad_chunk
    s.request(RequestOp.FW_INFO);
    s.request(RequestOp.FW_VERIFY);
    s.request(RequestOp.FW_TEST_BOOT, Buffer.from([2, 0])); // deadline below the minimum: BAD_ARGUMENT
    s.request(RequestOp.FW_TEST_BOOT, Buffer.from([30, 0]));
    s.reset(false); // the trial boot
    s.request(RequestOp.FW_INFO);
    s.request(RequestOp.FW_CONFIRM);
    s.request(RequestOp.FW_CONFIRM); // a retry
    s.request(RequestOp.FW_INFO);
    s.reset(false); // the confirmed image boots from now on
  }
  // Interrupted: power lost mid-write (torn), resumed at the sector start; the old image boots meanwhile.
  {
    const s = new Script('resume', lines);
    s.reset(true);
    s.begin(img2, [1, 1, 0]);
    s.chunks(img2, 0, 1152);
    s.tear(40);
    s.reset(false); // power back: the old slot boots, the transfer is kept
    s.request(RequestOp.FW_INFO);
    s.request(RequestOp.ENTER_BOOTLOADER);
    s.reset(true);
    s.begin(img2, [1, 1, 0]); // same image: resumes at 1024 (the torn sector is written again)
    s.chunks(img2, 1024, 2048);
    s.reset(true); // no tear this time: resumes exactly
    s.begin(img2, [1, 1, 0]);
    s.chunks(img2, 2048, 3000);
    s.request(RequestOp.FW_VERIFY);
    s.request(RequestOp.FW_ABORT);
    s.request(RequestOp.FW_INFO);
  }
  // Refusals before anything is written.
  {
    const s = new Script('refusals', lines);
    s.reset(true);
    s.chunk(img, 0, 64); // no transfer
    s.begin(img, [1, 1, 0], { model: 8 });
    s.begin(img, [1, 1, 0], { size: 4097 });
    s.begin(img, [1, 1, 0], { size: 0 });
    s.begin(img, [0, 9, 0]); // a downgrade without the flag
    s.request(RequestOp.FW_BEGIN, Buffer.from([1, 2, 3])); // arguments too short
    s.request(RequestOp.FW_VERIFY); // nothing to verify
    s.request(RequestOp.FW_TEST_BOOT, Buffer.from([30, 0])); // nothing verified
    s.request(RequestOp.FW_CONFIRM); // nothing on trial (and in the bootloader)
  }
  // A digest mismatch restarts the transfer; a downgrade the signed image allows goes through; the trial image is reverted.
  {
    const s = new Script('revert', lines);
    s.reset(true);
    const wrong = createHash('sha256').update('not the image').digest();
    s.begin(img, [0, 9, 0], { flags: 1, sha: wrong });
    s.chunks(img, 0, 600);
    s.request(RequestOp.FW_VERIFY); // FAILED, next 0
    s.begin(img, [0, 9, 1], { flags: 1 });
    s.chunks(img, 0, 600);
    s.request(RequestOp.FW_VERIFY);
    s.request(RequestOp.FW_TEST_BOOT, Buffer.from([5, 0]));
    s.reset(false); // trial boot of slot 1
    s.reset(false); // it never confirmed (hung, watchdog): back to slot 0 for good
    s.request(RequestOp.FW_INFO);
    s.reset(false);
  }
  const out = lines;
  const header = `# fwp 1.1 firmware-update receiver vectors (firmware-protocol/SPEC.md section 11.9). Generated by scripts/gen-vectors.js.
# Geometry: slot ${GEOMETRY.slotSize} bytes, sector ${GEOMETRY.sectorSize}, max_chunk ${GEOMETRY.maxChunk}, window ${GEOMETRY.window}, board model ${GEOMETRY.boardModel},
# factory image ${GEOMETRY.factory.join('.')} valid in slot 0, slot 1 empty, flash erased (0xFF). Each script starts from that state.
# Steps, in order:
#   in=HEX out=HEX|-    a frame into the board (wire bytes with its 00) and the frame it must answer, or - for none.
#                       The board's seq starts at 0 after each reset; the console's counts on through the script.
#   reset=0|1 boot=application|bootloader slot=N trial=0|1
#                       a reset (1: ENTER_BOOTLOADER asked to stay in the bootloader) and what the bootloader must choose.
#   tear=N              power lost mid-write: N bytes of 00 programmed at the next offset, not counted.
`;
  return { text: header + out.join('\n') + '\n', steps: out.length, scripts: 4 };
}
