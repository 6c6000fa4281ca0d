/**
 * The simulated board with a bootloader, driven directly (no pty): the rules
 * a real board keeps that the end-to-end tests do not reach in their time.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadCalibration } from '../../src/metrics/calibration.js';
import { BootMode, FwpFrame, FwpResult, MsgType, RequestOp, decodeFrame, encodeRequest } from '../../src/protocol/fwp/codec.js';
import { XferState } from '../../src/protocol/fwp/fwu.js';
import { BootloaderBoard } from '../../src/sim/bootloader-board.js';
import { tempDir } from '../helpers/agent.js';

const cal = loadCalibration('sim-bike-v1');
const IDLE = { name: 'idle', loop: true, segments: [{ durationS: 60, cadenceRpm: 0, resistancePct: 20, hrBpm: 0 }] };

function hellos(frames: Buffer[]): number[] {
  const f = new FwpFrame();
  const modes: number[] = [];
  for (const b of frames) {
    const z = b.indexOf(0, 1);
    if (decodeFrame(b, 1, z, f) === FwpResult.OK && f.type === MsgType.HELLO) modes.push(f.bootMode);
  }
  return modes;
}

describe('simulated board with a bootloader', () => {
  it('a bootloader left without a console for its timeout goes back to the application; power cycles keep the flash and its metadata', () => {
    const file = join(tempDir('bl-board-'), 'flash.bin');
    const board = new BootloaderBoard(cal, IDLE, { flashFile: file, boardModel: 1, bootloaderIdleUs: 2_000_000 });
    expect(hellos(board.boot())).toEqual([BootMode.APPLICATION]);
    board.advanceTo(100_000);
    board.receive(encodeRequest(0, RequestOp.ENTER_BOOTLOADER));
    expect(hellos(board.advanceTo(250_000))).toEqual([BootMode.BOOTLOADER]);
    // Nothing from the console for 2 s: back to the application, by itself.
    expect(hellos(board.advanceTo(1_500_000))).toEqual([]);
    expect(hellos(board.advanceTo(2_400_000))).toEqual([BootMode.APPLICATION]);
    expect(board.counters.bootloaderTimeouts).toBe(1);
    board.close();
    // The same flash file is the same board: factory metadata kept, not re-created.
    const again = new BootloaderBoard(cal, IDLE, { flashFile: file, boardModel: 1 });
    expect(again.fwu.meta.xfer.state).toBe(XferState.NONE);
    expect(again.fwu.meta.slots[0]).toEqual({ state: 1, version: [1, 0, 0] });
    again.close();
  });
});
