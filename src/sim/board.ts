/**
 * A virtual flywheel board: the physics of a rider on the calibrated bike,
 * and the board's side of the fwp protocol (samples, status, hello, requests).
 * Transport-free: it turns elapsed time into wire bytes and wire bytes into
 * replies; sim/runner.ts puts it on a pty or stdout.
 */
import type { Calibration } from '../metrics/calibration.js';
import {
  BodyWriter,
  FwpFrame,
  FwpResult,
  MsgType,
  RequestOp,
  ResponseStatus,
  SampleFlag,
  decodeFrame,
  encodeFrame,
  encodeFrameInto,
  MAX_WIRE_FRAME,
  writeHelloBody,
  writeSampleBody,
  writeStatusBody,
  type HelloFields,
} from '../protocol/fwp/codec.js';
import { RideScriptPlayer, type RideScript, type RideTarget } from './ride-script.js';
import { seededRandom } from './rng.js';

const LEADING_DELIMITER = Buffer.from([0]);

/**
 * A frame as a board sends it: with a leading 0x00 as well as the trailing
 * one (SPEC.md §2.3), so noise picked up while the line was idle ends before
 * the frame instead of corrupting it. The application and the bootloader
 * (bootloader-board.ts) each number their own frames.
 */
export function boardFrame(type: number, seq: number, body: BodyWriter): Buffer {
  return Buffer.concat([LEADING_DELIMITER, encodeFrame(type, seq, body.bytes, body.len)]);
}

export interface BoardFaults {
  /** Random bytes injected between frames, per second. */
  noiseBytesPerS?: number;
  /** Fraction of frames sent with a corrupted byte (the CRC catches it). */
  badCrcRate?: number;
  /** Fraction of frames not sent at all (their seq is used up, as on a real overrun). */
  dropRate?: number;
}

export interface SimBoardOptions {
  sampleRateHz?: number;
  seed?: number;
  /** Board clock at boot, microseconds (lets tests start close to the 32-bit wrap). */
  clockStartUs?: number;
  /** Crank revolutions counter at boot (lets tests start close to the 16-bit wrap). */
  crankRevsStart?: number;
  /** Flywheel tick counter at boot (lets tests start close to the 32-bit wrap). */
  flyTicksStart?: number;
  faults?: BoardFaults;
  serial?: Uint8Array;
  firmware?: readonly [number, number, number];
  hwRev?: number;
  /** fwp minor version the board says in HELLO (0 unless set; 1 adds boot_mode and board_model). */
  protoMinor?: number;
  /** Board model id (HELLO, minor >= 1). */
  boardModel?: number;
}

export class SimBoardCounters {
  framesSent = 0;
  samplesSent = 0;
  framesDropped = 0;
  framesCorrupted = 0;
  noiseBytes = 0;
  requests = 0;
  boots = 0;
}

export class SimBoard {
  readonly counters = new SimBoardCounters();
  readonly player: RideScriptPlayer;
  readonly target: RideTarget = { cadenceRpm: 0, resistancePct: 0, hrBpm: 0 };
  private readonly rand: () => number;
  private readonly w = new BodyWriter();
  private readonly rx = new FwpFrame();
  private rxBuf = Buffer.alloc(0);
  private sampleRateHz: number;
  private readonly hello: HelloFields;
  private readonly faults: Required<BoardFaults>;

  // Board state (reset at boot).
  private seq = 0;
  /** Board time since the ride started, microseconds (float; wrapped only on the wire). */
  private elapsedUs = 0;
  private clockStartUs: number;
  private nextSampleUs = 0;
  private nextStatusUs = 0;
  private flyPhase = 0;
  private flyTickUs = 0;
  private crankPhase = 0;
  private crankEvtUs = 0;
  private resistanceOffset = 0;
  private noiseCarry = 0;
  private rebootAtUs = -1;

  constructor(
    private readonly cal: Calibration,
    script: RideScript,
    private readonly opts: SimBoardOptions = {},
  ) {
    this.player = new RideScriptPlayer(script);
    this.rand = seededRandom(opts.seed ?? 1);
    this.sampleRateHz = opts.sampleRateHz ?? 50;
    this.clockStartUs = opts.clockStartUs ?? 0;
    this.faults = { noiseBytesPerS: 0, badCrcRate: 0, dropRate: 0, ...opts.faults };
    const serial = opts.serial ?? Buffer.from('SIMBIKE00001', 'ascii');
    const fw = opts.firmware ?? [1, 0, 0];
    this.hello = {
      protoMinor: opts.protoMinor ?? 0,
      bootMode: 0,
      boardModel: opts.boardModel ?? 0,
      fwMajor: fw[0],
      fwMinor: fw[1],
      fwPatch: fw[2],
      hwRev: opts.hwRev ?? 1,
      ticksPerRev: cal.ticksPerRev,
      sampleRateHz: this.sampleRateHz,
      serial,
    };
    this.crankPhase = opts.crankRevsStart ?? 0;
    this.flyPhase = opts.flyTicksStart ?? 0;
  }

  get sampleRate(): number {
    return this.sampleRateHz;
  }

  /** Board time now (µs since ride start). */
  get nowUs(): number {
    return this.elapsedUs;
  }

  setFaults(f: BoardFaults): void {
    Object.assign(this.faults, f);
  }

  /** The firmware version this board says it runs (a new image after an update). */
  setFirmware(v: readonly [number, number, number]): void {
    this.hello.fwMajor = v[0];
    this.hello.fwMinor = v[1];
    this.hello.fwPatch = v[2];
  }

  /** Boot at board time `elapsedUs` after time spent elsewhere (the bootloader): no samples for the time it was not running. */
  bootAt(elapsedUs: number): Buffer[] {
    this.elapsedUs = elapsedUs;
    this.lastPhysicsUs = elapsedUs;
    return this.boot();
  }

  /** HELLO's fields as this firmware says them. */
  get helloFields(): Readonly<HelloFields> {
    return this.hello;
  }

  /** Send a frame of this firmware's (its sequence numbers): for the bootloader's ops answered by the application. */
  emit(type: number, body: BodyWriter): Buffer {
    return this.frame(type, body);
  }

  /** Power-on: counters from zero, seq from zero, HELLO first. Returns the wire bytes. */
  boot(): Buffer[] {
    this.counters.boots++;
    this.seq = 0;
    const firstBoot = this.counters.boots === 1;
    this.flyPhase = firstBoot ? (this.opts.flyTicksStart ?? 0) : 0;
    this.crankPhase = firstBoot ? (this.opts.crankRevsStart ?? 0) : 0;
    // After a reboot the board clock restarts from zero.
    if (!firstBoot) this.clockStartUs = -this.elapsedUs;
    this.nextSampleUs = this.elapsedUs;
    this.nextStatusUs = this.elapsedUs;
    this.hello.sampleRateHz = this.sampleRateHz;
    return [this.frame(MsgType.HELLO, writeHelloBody(this.w.reset(), this.hello))];
  }

  private boardClock(us: number): number {
    return Math.floor(this.clockStartUs + us) >>> 0;
  }

  /**
   * Advance the physics to `elapsedUs` and return the frames due, with any
   * injected faults applied.
   */
  advanceTo(elapsedUs: number): Buffer[] {
    const out: Buffer[] = [];
    if (this.rebootAtUs >= 0 && elapsedUs >= this.rebootAtUs) {
      this.rebootAtUs = -1;
      this.elapsedUs = elapsedUs;
      out.push(...this.boot());
    }
    const stepUs = 1e6 / this.sampleRateHz;
    while (this.nextSampleUs <= elapsedUs) {
      const t = this.nextSampleUs;
      this.stepPhysics(t);
      out.push(...this.withFaults(this.sampleFrame(t)));
      if (t >= this.nextStatusUs) {
        out.push(...this.withFaults(this.statusFrame(t)));
        this.nextStatusUs += 1e6;
      }
      this.nextSampleUs += stepUs;
    }
    this.elapsedUs = elapsedUs;
    if (this.faults.noiseBytesPerS > 0) out.push(...this.noise(elapsedUs));
    return out;
  }

  private lastPhysicsUs = 0;

  /** Integrate crank and flywheel rotation from the last sample time to t. */
  private stepPhysics(tUs: number): void {
    const t0 = this.lastPhysicsUs;
    const dtS = (tUs - t0) / 1e6;
    this.lastPhysicsUs = tUs;
    this.player.at((t0 + tUs) / 2e6, this.target);
    if (dtS <= 0) return;
    const crankRate = this.target.cadenceRpm / 60; // rev/s
    const flyRate = crankRate * this.cal.gearRatio * this.cal.ticksPerRev; // ticks/s
    const crank1 = this.crankPhase + crankRate * dtS;
    if (Math.floor(crank1) > Math.floor(this.crankPhase)) {
      const k = Math.floor(crank1);
      this.crankEvtUs = t0 + ((k - this.crankPhase) / crankRate) * 1e6;
    }
    this.crankPhase = crank1;
    const fly1 = this.flyPhase + flyRate * dtS;
    if (Math.floor(fly1) > Math.floor(this.flyPhase)) {
      const k = Math.floor(fly1);
      this.flyTickUs = t0 + ((k - this.flyPhase) / flyRate) * 1e6;
    }
    this.flyPhase = fly1;
    this.player.at(tUs / 1e6, this.target);
  }

  /** Expected steady-state brake power for the current targets (what the agent should compute). */
  expectedPowerW(): number {
    return this.cal.brakeWatts(this.target.cadenceRpm * this.cal.gearRatio, this.target.resistancePct);
  }

  private sampleFrame(tUs: number): Buffer {
    return this.frame(MsgType.SAMPLE, this.sampleBody(tUs));
  }

  private sampleBody(tUs: number): BodyWriter {
    const hr = Math.round(this.target.hrBpm);
    const raw = Math.round(this.cal.rawForPct(this.target.resistancePct) + this.resistanceOffset + (this.rand() - 0.5));
    this.counters.samplesSent++;
    return writeSampleBody(this.w.reset(), {
      tUs: this.boardClock(tUs),
      flyTicks: Math.floor(this.flyPhase) % 4294967296,
      flyTickUs: this.boardClock(this.flyTickUs),
      crankRevs: Math.floor(this.crankPhase) & 0xffff,
      crankEvt: Math.floor(((this.clockStartUs + this.crankEvtUs) * 1024) / 1e6) & 0xffff,
      resistanceRaw: Math.max(0, Math.min(4095, raw)),
      hrBpm: Math.max(0, Math.min(255, hr)),
      flags: hr > 0 ? SampleFlag.HR_CONTACT : 0,
    });
  }

  private statusFrame(tUs: number): Buffer {
    const body = writeStatusBody(this.w.reset(), {
      uptimeS: Math.floor(tUs / 1e6),
      tempCentiC: 3650 + Math.round(this.rand() * 50),
      supplyMv: 12000 + Math.round(this.rand() * 40),
      faults: 0,
      boardDropped: this.counters.framesDropped,
    });
    return this.frame(MsgType.STATUS, body);
  }

  /** The next frame of this firmware's (boardFrame with its sequence number). */
  private frame(type: number, body: BodyWriter): Buffer {
    const b = boardFrame(type, this.seq, body);
    this.seq = (this.seq + 1) & 0xff;
    return b;
  }

  private withFaults(frame: Buffer): Buffer[] {
    const f = this.faults;
    if (f.dropRate > 0 && this.rand() < f.dropRate) {
      this.counters.framesDropped++;
      return [];
    }
    if (f.badCrcRate > 0 && this.rand() < f.badCrcRate) {
      // Flip a bit in a data byte, never creating a 0x00 (which would split the frame).
      const i = 2 + Math.floor(this.rand() * (frame.length - 3));
      let v = frame[i] ^ 0x10;
      if (v === 0) v = frame[i] ^ 0x20;
      frame[i] = v;
      this.counters.framesCorrupted++;
    }
    this.counters.framesSent++;
    return [frame];
  }

  private noise(elapsedUs: number): Buffer[] {
    const due = (this.faults.noiseBytesPerS * (elapsedUs - this.noiseCarry)) / 1e6;
    if (due < 1) return [];
    const n = Math.floor(due);
    this.noiseCarry = elapsedUs;
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.rand() * 256);
    this.counters.noiseBytes += n;
    return [b];
  }

  /** Bytes from the console; returns the replies to send. */
  receive(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let buf = Buffer.concat([this.rxBuf, chunk]);
    let z: number;
    while ((z = buf.indexOf(0)) >= 0) {
      const res = decodeFrame(buf, 0, z, this.rx);
      buf = buf.subarray(z + 1);
      if (res === FwpResult.OK && this.rx.type === MsgType.REQUEST) out.push(...this.handleRequest());
    }
    this.rxBuf = buf.length > 512 ? Buffer.alloc(0) : Buffer.from(buf);
    return out;
  }

  private handleRequest(): Buffer[] {
    const f = this.rx;
    this.counters.requests++;
    const w = this.w.reset().u8(f.seq);
    switch (f.op) {
      case RequestOp.GET_HELLO:
        w.u8(ResponseStatus.OK);
        writeHelloBody(w, this.hello);
        break;
      case RequestOp.SET_SAMPLE_RATE:
        if (f.dataLen < 2 || f.arg < 1 || f.arg > 200) {
          w.u8(ResponseStatus.BAD_ARGUMENT);
        } else {
          this.sampleRateHz = f.arg;
          this.hello.sampleRateHz = f.arg;
          w.u8(ResponseStatus.OK).u16(f.arg);
        }
        break;
      case RequestOp.ZERO_RESISTANCE:
        this.resistanceOffset = 0;
        w.u8(ResponseStatus.OK);
        break;
      case RequestOp.REBOOT:
        w.u8(ResponseStatus.OK);
        this.rebootAtUs = this.elapsedUs + 100_000;
        break;
      default:
        w.u8(ResponseStatus.UNKNOWN_OP);
    }
    return [this.frame(MsgType.RESPONSE, w)];
  }

  /**
   * `n` consecutive sample frames (no faults, no status) packed into one buffer,
   * for benchmarks and allocation tests that must not generate while measuring.
   */
  generateSamples(n: number): { bytes: Buffer; starts: Uint32Array; ends: Uint32Array } {
    const bytes = Buffer.alloc(n * MAX_WIRE_FRAME > 2 ** 31 ? 2 ** 31 : n * 40);
    const starts = new Uint32Array(n);
    const ends = new Uint32Array(n);
    const stepUs = 1e6 / this.sampleRateHz;
    let o = 0;
    for (let i = 0; i < n; i++) {
      const t = this.nextSampleUs;
      this.stepPhysics(t);
      const body = this.sampleBody(t);
      const len = encodeFrameInto(MsgType.SAMPLE, this.seq, body.bytes, body.len, bytes, o);
      this.seq = (this.seq + 1) & 0xff;
      starts[i] = o;
      ends[i] = o + len - 1; // delimiter excluded
      o += len;
      this.nextSampleUs += stepUs;
      this.elapsedUs = t;
    }
    return { bytes: bytes.subarray(0, o), starts, ends };
  }
}
