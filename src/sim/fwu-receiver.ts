/**
 * The board's side of a firmware update (SPEC.md section 11): the receive
 * state machine of the bootloader, and its boot decision. Synchronous and
 * transport-free, like the C reference (firmware-protocol/c/fwu.c), which
 * implements the same rules and is checked against the conversation vectors
 * (vectors/fwu-v1.vec) this module generates (scripts/gen-vectors.js).
 * The simulated board (sim/bootloader-board.ts) adds timing, power and the
 * firmware that runs from a slot.
 */
import { createHash } from 'node:crypto';
import { BodyWriter, BootMode, RequestOp, ResponseStatus } from '../protocol/fwp/codec.js';
import { crc32 } from '../protocol/fwp/crc32.js';
import {
  BeginFlag,
  BeginRefusal,
  ProgressStatus,
  SlotState,
  TEST_BOOT_DEADLINE_MAX_S,
  TEST_BOOT_DEADLINE_MIN_S,
  XferState,
  compareFwVersions,
  readFwBegin,
  writeFwInfo,
  writeFwResume,
  type FwVersion,
} from '../protocol/fwp/fwu.js';

/** What the bootloader keeps in flash across resets and power loss. */
export interface FwuMeta {
  activeSlot: number;
  slots: Array<{ state: number; version: FwVersion }>;
  xfer: { state: number; size: number; next: number; sha256: Uint8Array; version: FwVersion; slot: number };
  /** TESTING: the trial image has been started once (a reset before its confirm reverts it). */
  trialBooted: boolean;
  trialDeadlineS: number;
}

export function freshMeta(version: FwVersion): FwuMeta {
  return {
    activeSlot: 0,
    slots: [
      { state: SlotState.VALID, version },
      { state: SlotState.EMPTY, version: [0, 0, 0] },
    ],
    xfer: { state: XferState.NONE, size: 0, next: 0, sha256: new Uint8Array(32), version: [0, 0, 0], slot: 0 },
    trialBooted: false,
    trialDeadlineS: 0,
  };
}

export interface FwuFlash {
  readonly slotSize: number;
  readonly sectorSize: number;
  erase(slot: number, offset: number, len: number): void;
  /** Program bytes into erased flash; false on a write failure. */
  program(slot: number, offset: number, data: Uint8Array): boolean;
  read(slot: number, offset: number, len: number): Uint8Array;
  /** Persist the metadata (the bootloader's trailer sector). */
  saveMeta(meta: FwuMeta): void;
}

export interface FwuConfig {
  boardModel: number;
  /** Data bytes per FW_CHUNK this board takes. */
  maxChunk: number;
  /** Chunks the board can buffer while it writes flash. */
  window: number;
}

export type BootChoice = { mode: 'application'; slot: number; trial: boolean } | { mode: 'bootloader'; slot: -1; trial: false };

export class FwuReceiver {
  /** Where the running code came from: a slot in application mode, -1 in the bootloader. */
  runningSlot = -1;
  bootMode: number = BootMode.BOOTLOADER;
  /** Flash erased from the transfer's start up to here (sector-aligned); RAM only. */
  private erasedTo = 0;
  /** A refusal of the chunk at `next` was already reported: stay quiet until it arrives. */
  private nakSent = false;
  /** FW_CHUNK data bytes received, counted by the simulator's tests. */
  chunkBytes = 0;
  /** Each FW_BEGIN answered OK: where it told the console to send from, and whether that resumed a transfer. */
  readonly begins: Array<{ next: number; resumed: boolean }> = [];

  constructor(
    readonly cfg: FwuConfig,
    readonly flash: FwuFlash,
    readonly meta: FwuMeta,
  ) {}

  /** The bootloader's decision at reset. `stayInBootloader`: ENTER_BOOTLOADER asked for it (RAM flag, lost on power loss). */
  boot(stayInBootloader: boolean): BootChoice {
    const m = this.meta;
    this.nakSent = false;
    this.erasedTo = 0;
    if (m.xfer.state === XferState.TESTING) {
      if (m.trialBooted) {
        // Reset again before the confirm: the new image failed. Back to the old one for good.
        m.xfer.state = XferState.REJECTED;
        m.slots[m.xfer.slot].state = SlotState.INVALID;
        m.trialBooted = false;
        this.flash.saveMeta(m);
      } else {
        m.trialBooted = true;
        this.flash.saveMeta(m);
        return this.run({ mode: 'application', slot: m.xfer.slot, trial: true });
      }
    }
    if (stayInBootloader) return this.run({ mode: 'bootloader', slot: -1, trial: false });
    if (m.slots[m.activeSlot].state === SlotState.VALID) return this.run({ mode: 'application', slot: m.activeSlot, trial: false });
    const other = 1 - m.activeSlot;
    if (m.slots[other].state === SlotState.VALID) return this.run({ mode: 'application', slot: other, trial: false });
    return this.run({ mode: 'bootloader', slot: -1, trial: false });
  }

  private run(c: BootChoice): BootChoice {
    this.runningSlot = c.slot;
    this.bootMode = c.mode === 'application' ? BootMode.APPLICATION : BootMode.BOOTLOADER;
    return c;
  }

  /** The version the running application says in HELLO (the bootloader's own is the board's business). */
  runningVersion(): FwVersion | null {
    return this.runningSlot < 0 ? null : this.meta.slots[this.runningSlot].version;
  }

  /**
   * Handle a firmware-update REQUEST (ops FW_* and ENTER_BOOTLOADER). Writes
   * the RESPONSE data into `w` and returns its status, or -1 for an op that
   * is not a firmware-update op (the caller handles it).
   */
  request(op: number, args: Uint8Array, w: BodyWriter): number {
    const m = this.meta;
    const inBootloader = this.bootMode === BootMode.BOOTLOADER;
    switch (op) {
      case RequestOp.ENTER_BOOTLOADER:
        return ResponseStatus.OK;
      case RequestOp.FW_INFO:
        writeFwInfo(w, {
          bootMode: this.bootMode,
          activeSlot: m.activeSlot,
          boardModel: this.cfg.boardModel,
          slotSize: this.flash.slotSize,
          maxChunk: this.cfg.maxChunk,
          window: this.cfg.window,
          xferState: m.xfer.state,
          xferSize: m.xfer.size,
          xferNext: m.xfer.next,
          xferSha256: m.xfer.sha256,
          xferVersion: m.xfer.version,
          xferSlot: m.xfer.slot,
          slots: [m.slots[0], m.slots[1]],
        });
        return ResponseStatus.OK;
      case RequestOp.FW_BEGIN:
        if (!inBootloader) return ResponseStatus.WRONG_MODE;
        return this.begin(args, w);
      case RequestOp.FW_VERIFY:
        if (!inBootloader) return ResponseStatus.WRONG_MODE;
        return this.verify(w);
      case RequestOp.FW_TEST_BOOT: {
        if (!inBootloader) return ResponseStatus.WRONG_MODE;
        const deadline = args.length >= 2 ? args[0] | (args[1] << 8) : 0;
        if (deadline < TEST_BOOT_DEADLINE_MIN_S || deadline > TEST_BOOT_DEADLINE_MAX_S) return ResponseStatus.BAD_ARGUMENT;
        if (m.xfer.state === XferState.TESTING) return ResponseStatus.OK; // a retry after a lost response
        if (m.xfer.state !== XferState.VERIFIED) return ResponseStatus.BAD_ARGUMENT;
        m.xfer.state = XferState.TESTING;
        m.trialBooted = false;
        m.trialDeadlineS = deadline;
        this.flash.saveMeta(m);
        return ResponseStatus.OK;
      }
      case RequestOp.FW_CONFIRM:
        if (m.xfer.state === XferState.CONFIRMED) return ResponseStatus.OK; // a retry
        if (inBootloader) return ResponseStatus.WRONG_MODE;
        if (m.xfer.state !== XferState.TESTING || this.runningSlot !== m.xfer.slot) return ResponseStatus.BAD_ARGUMENT;
        m.xfer.state = XferState.CONFIRMED;
        m.activeSlot = m.xfer.slot;
        m.trialBooted = false;
        this.flash.saveMeta(m);
        return ResponseStatus.OK;
      case RequestOp.FW_ABORT:
        if (m.xfer.state === XferState.TESTING) return ResponseStatus.BAD_ARGUMENT;
        if (m.xfer.state === XferState.RECEIVING || m.xfer.state === XferState.VERIFIED) {
          m.slots[m.xfer.slot].state = SlotState.INVALID;
          m.xfer.state = XferState.NONE;
          this.flash.saveMeta(m);
        }
        return ResponseStatus.OK;
      default:
        return -1;
    }
  }

  private resume(w: BodyWriter): void {
    writeFwResume(w, { next: this.meta.xfer.next, maxChunk: this.cfg.maxChunk, window: this.cfg.window });
  }

  private begin(args: Uint8Array, w: BodyWriter): number {
    const a = readFwBegin(args);
    const m = this.meta;
    if (!a) return ResponseStatus.BAD_ARGUMENT;
    if (a.boardModel !== this.cfg.boardModel) {
      w.u8(BeginRefusal.MODEL);
      return ResponseStatus.BAD_ARGUMENT;
    }
    if (a.size === 0 || a.size > this.flash.slotSize) {
      w.u8(BeginRefusal.SIZE);
      return ResponseStatus.BAD_ARGUMENT;
    }
    const active = m.slots[m.activeSlot];
    if (!(a.flags & BeginFlag.ALLOW_DOWNGRADE) && active.state === SlotState.VALID && compareFwVersions(a.version, active.version) < 0) {
      w.u8(BeginRefusal.DOWNGRADE);
      return ResponseStatus.BAD_ARGUMENT;
    }
    const x = m.xfer;
    const same = x.size === a.size && Buffer.from(x.sha256).equals(Buffer.from(a.sha256)) && compareFwVersions(x.version, a.version) === 0;
    if (same && x.state === XferState.VERIFIED) {
      this.resume(w);
      return ResponseStatus.OK;
    }
    if (same && x.state === XferState.RECEIVING) {
      // Resume. Flash past `next` may hold a write that power loss cut short:
      // then the sector is written again from its start.
      const s = this.flash.sectorSize;
      const sectorStart = x.next - (x.next % s);
      const sectorEnd = Math.min(sectorStart + s, this.flash.slotSize);
      if (x.next % s !== 0 && !isErased(this.flash.read(x.slot, x.next, sectorEnd - x.next))) {
        x.next = sectorStart;
        this.flash.saveMeta(m);
      }
      this.erasedTo = x.next % s === 0 ? x.next : sectorEnd;
      this.nakSent = false;
      this.begins.push({ next: x.next, resumed: true });
      this.resume(w);
      return ResponseStatus.OK;
    }
    // A new image, into the slot not booted by default.
    const slot = 1 - m.activeSlot;
    m.slots[slot] = { state: SlotState.INVALID, version: a.version };
    m.xfer = { state: XferState.RECEIVING, size: a.size, next: 0, sha256: a.sha256, version: a.version, slot };
    m.trialBooted = false;
    this.flash.saveMeta(m);
    this.erasedTo = 0;
    this.nakSent = false;
    this.begins.push({ next: 0, resumed: false });
    this.resume(w);
    return ResponseStatus.OK;
  }

  private verify(w: BodyWriter): number {
    const m = this.meta;
    const x = m.xfer;
    if (x.state === XferState.VERIFIED) return ResponseStatus.OK;
    if (x.state !== XferState.RECEIVING) return ResponseStatus.BAD_ARGUMENT;
    if (x.next < x.size) {
      this.resume(w);
      return ResponseStatus.BUSY;
    }
    const digest = createHash('sha256')
      .update(this.flash.read(x.slot, 0, x.size))
      .digest();
    if (!digest.equals(Buffer.from(x.sha256))) {
      x.next = 0;
      this.erasedTo = 0;
      this.flash.saveMeta(m);
      this.resume(w);
      return ResponseStatus.FAILED;
    }
    x.state = XferState.VERIFIED;
    m.slots[x.slot].state = SlotState.VALID;
    this.flash.saveMeta(m);
    return ResponseStatus.OK;
  }

  /**
   * One FW_CHUNK: writes it when it is the data at `next`. Returns the
   * FW_PROGRESS status to report, or -1 to stay silent (a refusal of this
   * gap was already reported).
   */
  chunk(offset: number, crc: number, data: Uint8Array): number {
    const x = this.meta.xfer;
    this.chunkBytes += data.length;
    if (this.bootMode !== BootMode.BOOTLOADER || x.state !== XferState.RECEIVING) return this.refuse(ProgressStatus.NO_TRANSFER);
    if (data.length === 0 || data.length > this.cfg.maxChunk || offset + data.length > x.size) return this.refuse(ProgressStatus.BAD_CHUNK);
    if (crc32(data, 0, data.length) !== crc) return this.refuse(ProgressStatus.BAD_CHECK);
    if (offset > x.next) return this.refuse(ProgressStatus.OUT_OF_ORDER);
    if (offset + data.length <= x.next) return ProgressStatus.OK; // a repeat of what is written: acknowledge it again
    const from = x.next - offset;
    const end = offset + data.length;
    const s = this.flash.sectorSize;
    while (this.erasedTo < end) {
      this.flash.erase(x.slot, this.erasedTo, Math.min(s, this.flash.slotSize - this.erasedTo));
      this.erasedTo += s;
    }
    if (!this.flash.program(x.slot, x.next, data.subarray(from))) return this.refuse(ProgressStatus.FLASH_ERROR);
    x.next = end;
    this.flash.saveMeta(this.meta);
    this.nakSent = false;
    return ProgressStatus.OK;
  }

  private refuse(status: number): number {
    if (this.nakSent) return -1;
    this.nakSent = true;
    return status;
  }

  /** The next offset the board needs (FW_PROGRESS next). */
  get next(): number {
    return this.meta.xfer.next;
  }
}

function isErased(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0xff) return false;
  return true;
}
