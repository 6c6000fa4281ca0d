/**
 * fwp driver: turns decoded frames into engine readings and board state, and
 * requests into frames. Owns sequence tracking and request/response matching.
 * The SAMPLE path (decode -> engine.counterReading -> commitCounterReading) allocates nothing.
 */
import { AgentError } from '../../util/errors.js';
import type { BoardHello, BoardStatus } from '../../contracts/health.js';
import type { MetricsEngine } from '../../metrics/engine.js';
import { BoardClock } from './board-clock.js';
import { writeFwChunk } from './fwu.js';
import {
  BodyWriter,
  BootMode,
  FwpFrame,
  FwpResult,
  FWP_RESULT_NAMES,
  MsgType,
  RequestOp,
  ResponseStatus,
  decodeFrame,
  encodeFrame,
  encodeRequest,
  logText,
  readHelloFromResponse,
  serialHex,
} from './codec.js';

/** HELLO and STATUS as the agent reports them (contracts/health.ts). */

export class FwpCounters {
  /** Frames that decoded, by any type. */
  frames = 0;
  samples = 0;
  /** Decode failures, indexed by FwpResult code (0 unused). */
  readonly errors = new Uint32Array(FWP_RESULT_NAMES.length);
  /** Frames missing according to the board's sequence numbers. */
  lostFrames = 0;
  seqGaps = 0;
  boardResets = 0;
  requestsSent = 0;
  requestTimeouts = 0;

  errorsByName(): Record<string, number> {
    const out: Record<string, number> = {};
    for (let i = 1; i < this.errors.length; i++) out[FWP_RESULT_NAMES[i].replace(/^err_/, '')] = this.errors[i];
    return out;
  }
}

export interface FwpDriverEvents {
  onHello?: (hello: BoardHello, atBoot: boolean) => void;
  onStatus?: (status: BoardStatus) => void;
  onLog?: (level: number, text: string) => void;
  /** FW_PROGRESS (firmware update): the next offset the board needs, and how it took the last chunk. */
  onProgress?: (next: number, status: number, free: number) => void;
  /**
   * Deliver the bytes waiting on the link now (the link's readNow): asked
   * before a request is declared timed out, since after a held-up event loop
   * timers run before the reads that may hold its reply.
   */
  drainInput?: () => void;
}

export interface RequestOptions {
  timeoutMs: number;
  retries: number;
}

export class RequestError extends AgentError<'request_refused' | 'request_timeout' | 'request_cancelled'> {
  constructor(
    code: 'request_refused' | 'request_timeout' | 'request_cancelled',
    message: string,
    /** The board's status (request_refused). */
    readonly status?: number,
    /** The RESPONSE data that came with a refusal (FW_BEGIN's reason, FW_VERIFY's resume point). */
    readonly data?: Buffer,
  ) {
    super(code, message);
  }
}

interface Pending {
  op: number;
  resolve: (data: Buffer) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

const OP_NAMES: Record<number, string> = Object.fromEntries(Object.entries(RequestOp).map(([k, v]) => [v, k]));
const STATUS_NAMES: Record<number, string> = Object.fromEntries(Object.entries(ResponseStatus).map(([k, v]) => [v, k]));

export class FwpDriver {
  readonly frame = new FwpFrame();
  readonly counters = new FwpCounters();
  readonly clock = new BoardClock(10_000_000);
  hello: BoardHello | null = null;
  /** HELLOs seen (at boot or asked for): a firmware update waits for the next one. */
  helloCount = 0;
  status: BoardStatus | null = null;
  private expectSeq = -1;
  private txSeq = 0;
  private sampleStepUs = 20_000;
  private readonly pending = new Map<number, Pending>();

  constructor(
    private readonly engine: MetricsEngine,
    private readonly send: (bytes: Buffer) => boolean,
    private readonly events: FwpDriverEvents = {},
  ) {}

  /** A fresh connection: sequence numbering restarts, the board is asked who it is. */
  linkOpened(): void {
    this.expectSeq = -1;
  }

  decode(src: Uint8Array, start: number, end: number): void {
    const f = this.frame;
    const c = this.counters;
    const result = decodeFrame(src, start, end, f);
    if (result !== FwpResult.OK) {
      // Empty frames are allowed padding (a sender may flush with extra 0x00).
      if (result !== FwpResult.EMPTY) c.errors[result]++;
      return;
    }
    c.frames++;
    this.trackSeq(f.seq, f.type === MsgType.HELLO);
    switch (f.type) {
      case MsgType.SAMPLE: {
        c.samples++;
        if (this.clock.advanceTo(f, this.sampleStepUs)) this.engine.resetSource();
        // Into the engine's reading register: fields, so no boxed number crosses a call.
        const e = this.engine;
        const r = e.counterReading;
        r.tUs = this.clock.nowUs;
        r.boardT32 = f.tUs;
        r.flyTicks = f.flyTicks;
        r.flyTickUs = f.flyTickUs;
        r.crankRevs = f.crankRevs;
        r.crankEvt = f.crankEvt;
        r.resistanceRaw = f.resistanceRaw;
        r.hrBpm = f.hrBpm;
        r.flags = f.flags;
        e.commitCounterReading();
        return;
      }
      case MsgType.STATUS:
        this.status = {
          uptimeS: f.uptimeS,
          temperatureC: f.tempCentiC / 100,
          supplyV: f.supplyMv / 1000,
          faults: f.faults,
          boardDropped: f.boardDropped,
        };
        this.events.onStatus?.(this.status);
        return;
      case MsgType.HELLO:
        // An unsolicited HELLO means the board booted: its counters restarted.
        // Only a reboot after samples flowed disturbs derived state.
        // The next SAMPLE is then discontinuous and resets the engine's source state.
        if (c.samples > 0) {
          c.boardResets++;
          this.clock.reanchor();
        }
        this.setHello(true);
        return;
      case MsgType.RESPONSE:
        this.onResponse();
        return;
      case MsgType.LOG:
        this.events.onLog?.(f.level, logText(f));
        return;
      case MsgType.FW_PROGRESS:
        this.events.onProgress?.(f.fwNext, f.fwStatus, f.fwFree);
        return;
      default:
        // REQUEST frames are console-to-board; a board echoing them is ignored.
        return;
    }
  }

  private trackSeq(seq: number, isHello: boolean): void {
    if (this.expectSeq >= 0 && !(isHello && seq === 0)) {
      const gap = (seq - this.expectSeq) & 0xff;
      if (gap !== 0) {
        this.counters.seqGaps++;
        this.counters.lostFrames += gap;
      }
    }
    this.expectSeq = (seq + 1) & 0xff;
  }

  private setHello(atBoot: boolean): void {
    const f = this.frame;
    this.hello = {
      protoMinor: f.protoMinor,
      firmware: `${f.fwMajor}.${f.fwMinor}.${f.fwPatch}`,
      bootMode: f.bootMode === BootMode.BOOTLOADER ? 'bootloader' : 'application',
      boardModel: f.protoMinor >= 1 ? f.boardModel : null,
      hwRev: f.hwRev,
      ticksPerRev: f.ticksPerRev,
      sampleRateHz: f.sampleRateHz,
      serial: serialHex(f),
    };
    if (f.sampleRateHz > 0) this.sampleStepUs = 1e6 / f.sampleRateHz;
    this.helloCount++;
    this.events.onHello?.(this.hello, atBoot);
  }

  private onResponse(): void {
    const f = this.frame;
    const p = this.pending.get(f.reqSeq);
    if (!p) return; // late reply to a request that already timed out
    this.pending.delete(f.reqSeq);
    clearTimeout(p.timer);
    if (f.status !== ResponseStatus.OK) {
      p.reject(
        new RequestError(
          'request_refused',
          `board refused ${OP_NAMES[p.op] ?? p.op}: ${STATUS_NAMES[f.status] ?? `status ${f.status}`}`,
          f.status,
          Buffer.from(f.payload.subarray(f.dataOffset, f.dataOffset + f.dataLen)),
        ),
      );
      return;
    }
    if (p.op === RequestOp.GET_HELLO && readHelloFromResponse(f)) this.setHello(false);
    p.resolve(Buffer.from(f.payload.subarray(f.dataOffset, f.dataOffset + f.dataLen)));
  }

  /** Send one FW_CHUNK (image[from, from+len) at `offset`); false when the link is not open. Not on the sample path. */
  sendChunk(offset: number, image: Uint8Array, from: number, len: number): boolean {
    const seq = this.txSeq;
    this.txSeq = (this.txSeq + 1) & 0xff;
    const w = writeFwChunk(this.chunkWriter.reset(), offset, image, from, len);
    return this.send(encodeFrame(MsgType.FW_CHUNK, seq, w.bytes, w.len));
  }

  private readonly chunkWriter = new BodyWriter();

  /** Send one request, retrying on timeout with a new seq; resolves with the response data. */
  async request(op: number, arg: number | Uint8Array | undefined, opts: RequestOptions): Promise<Buffer> {
    let lastErr: Error = new RequestError('request_cancelled', 'not sent');
    for (let attempt = 0; attempt <= opts.retries; attempt++) {
      try {
        return await this.requestOnce(op, arg, opts.timeoutMs);
      } catch (err) {
        lastErr = err as Error;
        if (err instanceof RequestError && err.code === 'request_refused') throw err; // the board answered: no retry
      }
    }
    throw new RequestError(
      'request_timeout',
      `${OP_NAMES[op] ?? `op ${op}`}: no response after ${opts.retries + 1} attempts (${lastErr.message})`,
    );
  }

  private requestOnce(op: number, arg: number | Uint8Array | undefined, timeoutMs: number): Promise<Buffer> {
    const seq = this.txSeq;
    this.txSeq = (this.txSeq + 1) & 0xff;
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.events.drainInput?.();
        if (!this.pending.has(seq)) return; // the reply was waiting: resolved by the drain
        this.pending.delete(seq);
        this.counters.requestTimeouts++;
        reject(new RequestError('request_timeout', `timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(seq, { op, resolve, reject, timer });
      this.counters.requestsSent++;
      if (!this.send(encodeRequest(seq, op, arg))) {
        clearTimeout(timer);
        this.pending.delete(seq);
        reject(new RequestError('request_cancelled', 'link not open'));
      }
    });
  }

  /** Reject everything in flight (link lost or agent stopping). */
  cancelAll(reason: string): void {
    for (const [seq, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new RequestError('request_cancelled', reason));
      this.pending.delete(seq);
    }
  }
}
