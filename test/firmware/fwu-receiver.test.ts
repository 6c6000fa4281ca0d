/**
 * The board's firmware-update receiver (src/sim/fwu-receiver.ts, mirrored by
 * firmware-protocol/c/fwu.c): it answers every conversation vector exactly,
 * and the vectors say what SPEC.md section 11 promises (read back from the
 * frames, not from the receiver's internals).
 */
import { describe, expect, it } from 'vitest';
import { BodyWriter, FwpFrame, FwpResult, MsgType, ResponseStatus, decodeFrame, encodeFrame } from '../../src/protocol/fwp/codec.js';
import { BeginRefusal, ProgressStatus, XferState, readFwInfo, readFwResume, writeFwProgress } from '../../src/protocol/fwp/fwu.js';
import { FwuReceiver, freshMeta } from '../../src/sim/fwu-receiver.js';
import { RamFlash } from '../../src/sim/ram-flash.js';
import { loadFwuSteps } from '../helpers/vectors.js';

const G = { slotSize: 4096, sectorSize: 1024, maxChunk: 64, window: 4, boardModel: 7 };

const steps = loadFwuSteps();
const scripts = [...new Set(steps.map((s) => s.script))];

function decode(hex: string): FwpFrame {
  const wire = Buffer.from(hex, 'hex');
  const f = new FwpFrame();
  expect(decodeFrame(wire, 0, wire.length - 1, f)).toBe(FwpResult.OK);
  return f;
}
const data = (f: FwpFrame): Buffer => Buffer.from(f.payload.subarray(f.dataOffset, f.dataOffset + f.dataLen));

describe('firmware-update receiver against fwu-v1.vec', () => {
  it('the vectors cover four scripts and every progress status but flash_error', () => {
    expect(scripts).toEqual(['update', 'resume', 'refusals', 'revert']);
    const statuses = new Set(
      steps.filter((s) => s.out && s.out !== '-' && decode(s.out).type === MsgType.FW_PROGRESS).map((s) => decode(s.out).fwStatus),
    );
    for (const st of [
      ProgressStatus.OK,
      ProgressStatus.BAD_CHECK,
      ProgressStatus.OUT_OF_ORDER,
      ProgressStatus.NO_TRANSFER,
      ProgressStatus.BAD_CHUNK,
    ])
      expect(statuses.has(st), String(st)).toBe(true);
  });

  for (const name of scripts) {
    it(`${name}: every answer and boot choice as the vectors say`, () => {
      const flash = new RamFlash(G.slotSize, G.sectorSize);
      const meta = freshMeta([1, 0, 0]);
      const rx = new FwuReceiver({ boardModel: G.boardModel, maxChunk: G.maxChunk, window: G.window }, flash, meta);
      let boardSeq = 0;
      for (const s of steps.filter((x) => x.script === name)) {
        if (s.reset !== undefined) {
          const c = rx.boot(s.reset === '1');
          expect([c.mode, c.slot, c.trial ? 1 : 0], `step ${s.step}`).toEqual([s.boot, Number(s.slot), Number(s.trial)]);
          boardSeq = 0;
          continue;
        }
        if (s.tear !== undefined) {
          flash.program(meta.xfer.slot, meta.xfer.next, Buffer.alloc(Number(s.tear), 0));
          continue;
        }
        const f = decode(s.in);
        let got = '-';
        if (f.type === MsgType.REQUEST) {
          const w = new BodyWriter();
          const st = rx.request(f.op, data(f), w);
          expect(st, `step ${s.step}`).toBeGreaterThanOrEqual(0);
          const body = new BodyWriter().u8(f.seq).u8(st).raw(w.bytes.subarray(0, w.len));
          got = encodeFrame(MsgType.RESPONSE, boardSeq++, body.bytes, body.len).toString('hex');
        } else {
          const st = rx.chunk(f.chunkOffset, f.chunkCrc, data(f));
          if (st >= 0) {
            const body = writeFwProgress(new BodyWriter(), rx.next, st, G.window);
            got = encodeFrame(MsgType.FW_PROGRESS, boardSeq++, body.bytes, body.len).toString('hex');
          }
        }
        expect(got, `step ${s.step}`).toBe(s.out);
      }
    });
  }

  it('say what SPEC.md promises: gaps reported once, resume at the torn sector, refusals with reasons, a reverted trial', () => {
    const script = (n: string) => steps.filter((s) => s.script === n);
    const answers = (n: string) => script(n).filter((s) => s.in);
    // update: the corrupted chunk at 128 is refused (bad_check, next 128) and the chunk after it dropped silently.
    const up = answers('update');
    const badCheck = up.find(
      (s) => s.out !== '-' && decode(s.out).type === MsgType.FW_PROGRESS && decode(s.out).fwStatus === ProgressStatus.BAD_CHECK,
    )!;
    expect(decode(badCheck.out).fwNext).toBe(128);
    expect(up[up.indexOf(badCheck) + 1].out).toBe('-');
    const lastInfo = readFwInfo(
      data(decode(up.filter((s) => decode(s.in).op === 0x10 && decode(s.in).type === MsgType.REQUEST).pop()!.out)),
    )!;
    expect([lastInfo.xferState, lastInfo.activeSlot, lastInfo.slots[1].version]).toEqual([XferState.CONFIRMED, 1, [1, 1, 0]]);
    // resume: power lost while writing past 1152; the board resumes at 1024, the start of the torn sector.
    const begins = answers('resume').filter((s) => decode(s.in).type === MsgType.REQUEST && decode(s.in).op === 0x11);
    expect(begins.map((s) => readFwResume(data(decode(s.out)))!.next)).toEqual([0, 1024, 2048]);
    // refusals: model, size (too large and zero), downgrade, each with its reason byte.
    const refused = answers('refusals').filter((s) => decode(s.in).type === MsgType.REQUEST && decode(s.in).op === 0x11);
    expect(refused.map((s) => [decode(s.out).status, data(decode(s.out))[0] ?? null])).toEqual([
      [ResponseStatus.BAD_ARGUMENT, BeginRefusal.MODEL],
      [ResponseStatus.BAD_ARGUMENT, BeginRefusal.SIZE],
      [ResponseStatus.BAD_ARGUMENT, BeginRefusal.SIZE],
      [ResponseStatus.BAD_ARGUMENT, BeginRefusal.DOWNGRADE],
      [ResponseStatus.BAD_ARGUMENT, null],
    ]);
    // revert: the digest mismatch restarts at 0 (FAILED); the unconfirmed trial is rejected and slot 0 boots.
    const rv = script('revert');
    const failed = rv.find((s) => s.in && decode(s.in).type === MsgType.REQUEST && decode(s.in).op === 0x12)!;
    expect([decode(failed.out).status, readFwResume(data(decode(failed.out)))!.next]).toEqual([ResponseStatus.FAILED, 0]);
    expect(rv.filter((s) => s.reset !== undefined).map((s) => `${s.boot}:${s.slot}:${s.trial}`)).toEqual([
      'bootloader:-1:0',
      'application:1:1',
      'application:0:0',
      'application:0:0',
    ]);
    const info = readFwInfo(data(decode(rv.filter((s) => s.in).pop()!.out)))!;
    expect([info.xferState, info.activeSlot, info.slots[1].state]).toEqual([XferState.REJECTED, 0, 2]);
  });
});
