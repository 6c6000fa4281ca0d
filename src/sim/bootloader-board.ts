/**
 * A simulated flywheel board with a bootloader and two image slots in a
 * file-backed flash (sim/flash.ts): the firmware team's board as the agent's
 * update has to survive it. It plays:
 * - the application (sim/board.ts) running from a slot, answering FW_INFO,
 *   ENTER_BOOTLOADER and FW_CONFIRM besides its own requests;
 * - the bootloader: HELLO with boot_mode 1, no samples, FW_BEGIN/FW_CHUNK/
 *   FW_VERIFY/FW_TEST_BOOT/FW_ABORT (the rules: sim/fwu-receiver.ts);
 * - flash timing (sector erase, page program, hashing) with a receive buffer
 *   of `window` chunks, so acknowledgements come when the data is written;
 * - a trial boot that must be confirmed within its deadline, else the
 *   watchdog resets and the bootloader goes back to the old slot;
 * - an image that hangs at boot (never says HELLO), power cuts that tear the
 *   write in progress, and noise on the console-to-board line.
 * An image's first bytes say how the simulated firmware behaves
 * (simFirmwareImage); any other image runs normally.
 *
 * Over 400 lines: the modes above switch on one state and one simulated
 * clock (a power cut or a watchdog reset lands in the middle of any of
 * them); the receive rules already live in sim/fwu-receiver.ts and the
 * flash in sim/flash.ts.
 */
import type { Calibration } from '../metrics/calibration.js';
import {
  BodyWriter,
  BootMode,
  FwpFrame,
  FwpResult,
  MsgType,
  RequestOp,
  ResponseStatus,
  decodeFrame,
  writeHelloBody,
  type HelloFields,
} from '../protocol/fwp/codec.js';
import { SlotState, XferState, writeFwProgress, type FwVersion } from '../protocol/fwp/fwu.js';
import { SimBoard, boardFrame, type SimBoardOptions } from './board.js';
import { SimFlash } from './flash.js';
import { FwuReceiver } from './fwu-receiver.js';
import type { RideScript } from './ride-script.js';
import { seededRandom } from './rng.js';
import type { SimulatedBoard } from './runner.js';

const SIM_IMAGE_MAGIC = Buffer.from('FWSIMIMG', 'ascii');
export const SimImageBehaviour = { NORMAL: 0, HANG_AT_BOOT: 1 } as const;

/** A test image of `size` bytes whose simulated firmware behaves as told (seeded filler after the header). */
export function simFirmwareImage(size: number, behaviour: number, seed = 1): Buffer {
  const b = Buffer.alloc(size);
  const rand = seededRandom(seed);
  for (let i = 0; i < size; i++) b[i] = Math.floor(rand() * 256);
  SIM_IMAGE_MAGIC.copy(b, 0);
  b[8] = behaviour;
  return b;
}

export interface BootloaderBoardOptions {
  flashFile: string;
  boardModel: number;
  /** What the factory put in slot 0 of a new flash file. */
  factoryVersion?: FwVersion;
  slotSize?: number;
  sectorSize?: number;
  maxChunk?: number;
  window?: number;
  /** Flash timing: one sector erase, and programming per byte (real NOR: ~20-50 ms per 4 KiB, ~1 ms per 256 B). */
  eraseUsPerSector?: number;
  programUsPerByte?: number;
  /** SHA-256 over the image at verify, per byte. */
  hashUsPerByte?: number;
  /** Reset to first frame. */
  bootUs?: number;
  /** The bootloader goes back to a valid application after this long without a frame from the console (SPEC.md 11.6). */
  bootloaderIdleUs?: number;
  /** Fraction of FW_CHUNK frames hit by line noise on their way to the board (a bit flipped). */
  chunkNoiseRate?: number;
  seed?: number;
  /** The application's options (sample rate, serial, ...); firmware comes from the slot. */
  app?: SimBoardOptions;
}

type Mode = 'off' | 'bootloader' | 'application' | 'hung';

interface QueuedChunk {
  arrivedUs: number;
  offset: number;
  crc: number;
  data: Buffer;
}

export class BootloaderBoardCounters {
  resets = 0;
  powerCuts = 0;
  tornWrites = 0;
  reverts = 0;
  chunksReceived = 0;
  chunkNoise = 0;
  overruns = 0;
  watchdogResets = 0;
  bootloaderTimeouts = 0;
}

export class BootloaderBoard implements SimulatedBoard {
  readonly flash: SimFlash;
  readonly fwu: FwuReceiver;
  readonly app: SimBoard;
  readonly counters = new BootloaderBoardCounters();
  mode: Mode = 'off';
  private readonly o: Required<Omit<BootloaderBoardOptions, 'app' | 'factoryVersion'>>;
  private readonly rand: () => number;
  private readonly rx = new FwpFrame();
  private rxBuf = Buffer.alloc(0);
  private readonly w = new BodyWriter();
  private readonly data = new BodyWriter();
  private nowUs = 0;
  private lastRxUs = 0;
  private blSeq = 0;
  private resetAtUs = -1;
  private stayInBootloader = false;
  private watchdogAtUs = -1;
  private readonly queue: QueuedChunk[] = [];
  /** The head of the queue is being written until then (-1: idle). */
  private busyUntilUs = -1;
  private readonly delayed: Array<{ atUs: number; frame: () => Buffer }> = [];
  private readonly blHello: HelloFields;

  constructor(cal: Calibration, script: RideScript, opts: BootloaderBoardOptions) {
    this.o = {
      flashFile: opts.flashFile,
      boardModel: opts.boardModel,
      slotSize: opts.slotSize ?? 512 * 1024,
      sectorSize: opts.sectorSize ?? 4096,
      maxChunk: opts.maxChunk ?? 240,
      window: opts.window ?? 8,
      eraseUsPerSector: opts.eraseUsPerSector ?? 25_000,
      programUsPerByte: opts.programUsPerByte ?? 4,
      hashUsPerByte: opts.hashUsPerByte ?? 1,
      bootUs: opts.bootUs ?? 50_000,
      bootloaderIdleUs: opts.bootloaderIdleUs ?? 60_000_000,
      chunkNoiseRate: opts.chunkNoiseRate ?? 0,
      seed: opts.seed ?? 1,
    };
    this.rand = seededRandom(this.o.seed * 7919 + 1);
    const factoryVersion = opts.factoryVersion ?? [1, 0, 0];
    this.flash = new SimFlash(this.o.flashFile, {
      slotSize: this.o.slotSize,
      sectorSize: this.o.sectorSize,
      factoryVersion,
      factoryImage: simFirmwareImage(64 * 1024, SimImageBehaviour.NORMAL, 99),
    });
    this.fwu = new FwuReceiver(
      { boardModel: this.o.boardModel, maxChunk: this.o.maxChunk, window: this.o.window },
      this.flash,
      this.flash.meta,
    );
    this.app = new SimBoard(cal, script, {
      ...opts.app,
      protoMinor: 1,
      boardModel: this.o.boardModel,
      firmware: factoryVersion,
      seed: this.o.seed,
    });
    const serial = opts.app?.serial ?? Buffer.from('SIMBIKE00001', 'ascii');
    this.blHello = {
      protoMinor: 1,
      fwMajor: 1,
      fwMinor: 0,
      fwPatch: 0,
      hwRev: opts.app?.hwRev ?? 1,
      ticksPerRev: 0,
      sampleRateHz: 0,
      serial,
      bootMode: BootMode.BOOTLOADER,
      boardModel: this.o.boardModel,
    };
  }

  /** Power on. */
  boot(): Buffer[] {
    return this.reset(false);
  }

  /** A chunk is being programmed into flash now (the head of the receive buffer, at the next offset): a power cut tears it. */
  get programming(): boolean {
    const head = this.queue[0];
    return this.mode === 'bootloader' && head !== undefined && head.offset <= this.fwu.meta.xfer.next;
  }

  /** Cut the power now: the chunk being written (the head of the receive buffer) is torn, part of it in flash and not counted; RAM is lost. */
  powerCut(): void {
    this.counters.powerCuts++;
    const head = this.queue[0];
    if (head && this.programming) {
      const x = this.fwu.meta.xfer;
      const from = Math.max(0, x.next - head.offset);
      const torn = head.data.subarray(from, from + Math.max(1, Math.floor((head.data.length - from) / 2)));
      if (torn.length > 0 && head.offset + from === x.next) {
        // The sector holding `next` is erased already when a chunk is being programmed into it.
        this.flash.program(x.slot, x.next, torn);
        this.counters.tornWrites++;
      }
    }
    this.mode = 'off';
    this.queue.length = 0;
    this.busyUntilUs = -1;
    this.delayed.length = 0;
    this.resetAtUs = -1;
    this.watchdogAtUs = -1;
    this.stayInBootloader = false;
    this.rxBuf = Buffer.alloc(0);
  }

  /** Power back on (the frames follow on the next advance). */
  powerOn(): void {
    if (this.mode === 'off') this.resetAtUs = this.nowUs + this.o.bootUs;
  }

  private reset(stay: boolean): Buffer[] {
    this.counters.resets++;
    this.queue.length = 0;
    this.busyUntilUs = -1;
    this.delayed.length = 0;
    this.watchdogAtUs = -1;
    this.rxBuf = Buffer.alloc(0);
    const stateBefore = this.fwu.meta.xfer.state;
    const choice = this.fwu.boot(stay);
    if (stateBefore !== this.fwu.meta.xfer.state && this.fwu.meta.xfer.state === XferState.REJECTED) this.counters.reverts++;
    if (choice.mode === 'bootloader') {
      this.mode = 'bootloader';
      this.lastRxUs = this.nowUs;
      this.blSeq = 0;
      return [this.blFrame(MsgType.HELLO, writeHelloBody(this.w.reset(), this.blHello))];
    }
    const header = Buffer.from(this.flash.read(choice.slot, 0, 9));
    if (choice.trial) this.watchdogAtUs = this.nowUs + this.fwu.meta.trialDeadlineS * 1e6;
    if (header.subarray(0, 8).equals(SIM_IMAGE_MAGIC) && header[8] === SimImageBehaviour.HANG_AT_BOOT) {
      // Never says HELLO. Only the watchdog (trial boot) gets the board out of here.
      this.mode = 'hung';
      return [];
    }
    this.mode = 'application';
    this.app.setFirmware(this.fwu.meta.slots[choice.slot].version);
    return this.app.bootAt(this.nowUs);
  }

  private blFrame(type: number, body: BodyWriter): Buffer {
    const b = boardFrame(type, this.blSeq, body);
    this.blSeq = (this.blSeq + 1) & 0xff;
    return b;
  }

  /** A frame from whichever program runs now. */
  private send(type: number, body: BodyWriter): Buffer {
    return this.mode === 'application' ? this.app.emit(type, body) : this.blFrame(type, body);
  }

  advanceTo(elapsedUs: number): Buffer[] {
    const out: Buffer[] = [];
    this.nowUs = elapsedUs;
    if (this.watchdogAtUs >= 0 && elapsedUs >= this.watchdogAtUs) {
      // Not confirmed in time: the watchdog resets; the bootloader reverts.
      this.counters.watchdogResets++;
      this.watchdogAtUs = -1;
      this.resetAtUs = elapsedUs;
      this.stayInBootloader = false;
      this.mode = 'off';
    }
    if (this.mode === 'bootloader' && this.resetAtUs < 0 && elapsedUs - this.lastRxUs > this.o.bootloaderIdleUs && this.hasValidSlot()) {
      // The console went away mid-update: back to the application (the transfer is kept for later).
      this.counters.bootloaderTimeouts++;
      this.resetAtUs = elapsedUs;
      this.stayInBootloader = false;
    }
    if (this.resetAtUs >= 0 && elapsedUs >= this.resetAtUs) {
      this.resetAtUs = -1;
      const stay = this.stayInBootloader;
      this.stayInBootloader = false;
      out.push(...this.reset(stay));
    }
    this.writeQueued(elapsedUs, out);
    for (let i = 0; i < this.delayed.length;) {
      if (this.delayed[i].atUs <= elapsedUs) out.push(this.delayed.splice(i, 1)[0].frame());
      else i++;
    }
    if (this.mode === 'application') out.push(...this.app.advanceTo(elapsedUs));
    return out;
  }

  /** Write the buffered chunks whose flash time has passed; each is acknowledged when written. */
  private writeQueued(nowUs: number, out: Buffer[]): void {
    while (this.queue.length > 0 && this.mode === 'bootloader') {
      const head = this.queue[0];
      if (this.busyUntilUs < 0) {
        const s = this.o.sectorSize;
        const next = this.fwu.next;
        const end = head.offset + head.data.length;
        // Writing into a sector not yet erased costs its erase first.
        const erase = end > next && (next % s === 0 || Math.floor((end - 1) / s) > Math.floor(next / s)) ? this.o.eraseUsPerSector : 0;
        this.busyUntilUs = Math.max(this.lastWriteDoneUs, head.arrivedUs) + erase + head.data.length * this.o.programUsPerByte;
      }
      if (this.busyUntilUs > nowUs) return;
      this.lastWriteDoneUs = this.busyUntilUs;
      this.busyUntilUs = -1;
      this.queue.shift();
      const status = this.fwu.chunk(head.offset, head.crc, head.data);
      if (status >= 0)
        out.push(
          this.blFrame(MsgType.FW_PROGRESS, writeFwProgress(this.w.reset(), this.fwu.next, status, this.o.window - this.queue.length)),
        );
    }
  }

  private lastWriteDoneUs = 0;

  receive(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    if (this.mode === 'off' || this.mode === 'hung') return out;
    this.lastRxUs = this.nowUs;
    let buf = this.rxBuf.length ? Buffer.concat([this.rxBuf, chunk]) : chunk;
    let z: number;
    while ((z = buf.indexOf(0)) >= 0) {
      const frame = buf.subarray(0, z);
      buf = buf.subarray(z + 1);
      if (frame.length === 0) continue;
      this.onFrame(frame, out);
    }
    this.rxBuf = buf.length > 1024 ? Buffer.alloc(0) : Buffer.from(buf);
    return out;
  }

  private onFrame(frame: Buffer, out: Buffer[]): void {
    const f = this.rx;
    if (decodeFrame(frame, 0, frame.length, f) !== FwpResult.OK) {
      if (this.mode === 'application') out.push(...this.app.receive(Buffer.concat([frame, Buffer.from([0])])));
      return;
    }
    if (f.type === MsgType.FW_CHUNK) {
      this.counters.chunksReceived++;
      if (this.o.chunkNoiseRate > 0 && this.rand() < this.o.chunkNoiseRate) {
        // Noise on the line: one bit of the frame flipped; the frame CRC drops it, as a real receiver would.
        this.counters.chunkNoise++;
        return;
      }
      const data = Buffer.from(f.payload.subarray(f.dataOffset, f.dataOffset + f.dataLen));
      if (this.mode !== 'bootloader') {
        const st = this.fwu.chunk(f.chunkOffset, f.chunkCrc, data);
        if (st >= 0) out.push(this.send(MsgType.FW_PROGRESS, writeFwProgress(this.w.reset(), this.fwu.next, st, 0)));
        return;
      }
      if (this.queue.length >= this.o.window) {
        // More in flight than the board said it buffers: the UART overruns.
        this.counters.overruns++;
        return;
      }
      this.queue.push({ arrivedUs: this.nowUs, offset: f.chunkOffset, crc: f.chunkCrc, data });
      return;
    }
    if (f.type !== MsgType.REQUEST) return;
    const args = f.payload.subarray(f.dataOffset, f.dataOffset + f.dataLen);
    const seq = f.seq;
    const op = f.op;
    const status = this.fwu.request(op, args, this.data.reset());
    if (status >= 0) {
      const reply = (): Buffer =>
        this.send(MsgType.RESPONSE, this.w.reset().u8(seq).u8(status).raw(this.data.bytes.subarray(0, this.data.len)));
      if (op === RequestOp.FW_VERIFY && status === ResponseStatus.OK) {
        // Hashing the image takes the board a while; the answer comes when it is done.
        const bytes = Buffer.from(this.data.bytes.subarray(0, this.data.len));
        this.delayed.push({
          atUs: this.nowUs + this.fwu.meta.xfer.size * this.o.hashUsPerByte,
          frame: () => this.send(MsgType.RESPONSE, this.w.reset().u8(seq).u8(status).raw(bytes)),
        });
        return;
      }
      out.push(reply());
      if (status !== ResponseStatus.OK) return;
      if (op === RequestOp.ENTER_BOOTLOADER && this.mode === 'application') this.scheduleReset(true);
      if (op === RequestOp.FW_TEST_BOOT) this.scheduleReset(false);
      if (op === RequestOp.FW_ABORT && this.mode === 'bootloader') this.scheduleReset(false);
      if (op === RequestOp.FW_CONFIRM) this.watchdogAtUs = -1;
      return;
    }
    if (this.mode === 'application') {
      out.push(...this.app.receive(Buffer.concat([frame, Buffer.from([0])])));
      return;
    }
    // The bootloader's own few requests.
    const w = this.w.reset().u8(seq);
    if (op === RequestOp.GET_HELLO) writeHelloBody(w.u8(ResponseStatus.OK), this.blHello);
    else if (op === RequestOp.REBOOT) {
      w.u8(ResponseStatus.OK);
      this.scheduleReset(false);
    } else if (op === RequestOp.SET_SAMPLE_RATE || op === RequestOp.ZERO_RESISTANCE) w.u8(ResponseStatus.WRONG_MODE);
    else w.u8(ResponseStatus.UNKNOWN_OP);
    out.push(this.blFrame(MsgType.RESPONSE, w));
  }

  private hasValidSlot(): boolean {
    return this.fwu.meta.slots.some((s) => s.state === SlotState.VALID);
  }

  private scheduleReset(stay: boolean): void {
    this.stayInBootloader = stay;
    this.resetAtUs = this.nowUs + 100_000;
  }

  close(): void {
    this.flash.close();
  }
}
