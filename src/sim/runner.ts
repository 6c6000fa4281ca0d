/**
 * Puts a SimBoard on a transport in real time: a pty (through socat) or a
 * writable stream. Also plays unplug/replug by tearing the pty down.
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as Serial from 'serialport';
import { requireCjs } from '../util/require-cjs.js';
import type { Writable } from 'node:stream';
import type { SimBoard } from './board.js';
import { PtyPair } from './pty.js';
import { PolledReader } from '../link/polled-reader.js';
import { writeDirect } from '../link/direct-write.js';

const { SerialPort } = requireCjs('serialport') as typeof Serial;
type SerialPort = Serial.SerialPort;

/** A simulated board: what it sends as time passes, and its replies to what it receives. */
export interface SimulatedBoard {
  boot(): Buffer[];
  advanceTo(elapsedUs: number): Buffer[];
  receive(chunk: Buffer): Buffer[];
}

export interface UnplugPlan {
  everyS: number;
  forS: number;
}

export interface SimRunnerOptions<B extends SimulatedBoard = SimBoard> {
  board: B;
  /** Timer period; frames due are computed from elapsed time, so timer jitter does not change the data. */
  tickMs?: number;
  unplug?: UnplugPlan;
  /** Stop after this many seconds of ride (default: run until stopped). */
  durationS?: number;
  /**
   * Pace the console's bytes to the board at this many bytes per second, as a
   * UART at that line rate would deliver them (a pty delivers at once); for
   * a baud rate b with 8N1, b / 10. Unset: as fast as the pty.
   */
  lineBytesPerS?: number;
  onEvent?: (event: string, detail: Record<string, unknown>) => void;
}

export class SimRunner<B extends SimulatedBoard = SimBoard> {
  private timer: NodeJS.Timeout | null = null;
  private startNs = 0n;
  private port: SerialPort | null = null;
  private pty: PtyPair | null = null;
  private unplugged = false;
  /** Frames the board produced while its cable was out (lost on the wire). */
  framesWhileUnplugged = 0;
  private nextUnplugS = Infinity;
  private stopped = false;
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(private readonly opts: SimRunnerOptions<B>) {
    this.done = new Promise((r) => (this.resolveDone = r));
  }

  get board(): B {
    return this.opts.board;
  }

  /** Serve on a new pty pair; returns the path the agent should open. */
  async startOnPty(dir: string = mkdtempSync(join(tmpdir(), 'bike-sim-')), baudRate = 115200): Promise<string> {
    // `simulate --dir` names a folder that may not exist yet; socat would only say it cannot make the link.
    mkdirSync(dir, { recursive: true });
    this.pty = new PtyPair(join(dir, 'board'), join(dir, 'console'));
    await this.pty.open();
    await this.openBoardPort(baudRate);
    this.baudRate = baudRate;
    if (this.opts.unplug) this.nextUnplugS = this.opts.unplug.everyS;
    this.begin((b) => this.port && writeDirect(this.port, b));
    return this.pty.consolePath;
  }

  private baudRate = 115200;

  /** Serve on a stream (stdout): raw bytes, no requests. */
  startOnStream(out: Writable): void {
    this.begin((b) => out.write(b));
  }

  /**
   * Serve in memory, in real time: the board's bytes to `toConsole`; the
   * returned function takes the console's bytes (answered at once). For tests
   * of protocol and engine that need a board but no serial port.
   */
  startInMemory(toConsole: (b: Buffer) => void): (fromConsole: Buffer) => void {
    this.begin(toConsole);
    return (chunk) => {
      this.bytesFromConsole += chunk.length;
      for (const reply of this.opts.board.receive(chunk)) toConsole(reply);
    };
  }

  private async openBoardPort(baudRate: number): Promise<void> {
    if (!this.pty) return;
    const port = new SerialPort({ path: this.pty.boardPath, baudRate, autoOpen: false });
    await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
    const onData = (chunk: Buffer): void => {
      const rate = this.opts.lineBytesPerS;
      if (rate) {
        // The last byte of this chunk reaches the board when the line has carried everything before it.
        const now = this.elapsedS();
        this.lineFreeAtS = Math.max(now, this.lineFreeAtS) + chunk.length / rate;
        this.rxQueue.push({ atS: this.lineFreeAtS, bytes: chunk });
        return;
      }
      for (const reply of this.opts.board.receive(chunk)) writeDirect(port, reply);
    };
    // A board answers at once: bytes read on the event loop as they come and
    // replies written straight to the fd, not through serialport's threadpool
    // round trips, which under a loaded machine delay a reply past the
    // console's poll period.
    // The reader lends its buffer for the call; the board keeps what it is given, so a copy.
    const reader = PolledReader.attach(
      port,
      (b, start, end) => onData(Buffer.from(b.subarray(start, end))),
      () => {},
      0,
    );
    if (reader) this.reader = reader;
    else port.on('data', onData);
    port.on('error', () => {});
    this.port = port;
  }

  private write: (b: Buffer) => void = () => {};
  private reader: PolledReader | null = null;

  private lineFreeAtS = 0;
  private readonly rxQueue: Array<{ atS: number; bytes: Buffer }> = [];
  /** Bytes the board received from the console. */
  bytesFromConsole = 0;

  private begin(write: (b: Buffer) => void): void {
    this.write = write;
    this.startNs = process.hrtime.bigint();
    for (const f of this.opts.board.boot()) write(f);
    this.timer = setInterval(() => void this.tick(), this.opts.tickMs ?? 20);
  }

  elapsedS(): number {
    return Number(process.hrtime.bigint() - this.startNs) / 1e9;
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    const t = this.elapsedS();
    const frames = this.opts.board.advanceTo(t * 1e6);
    if (!this.unplugged) for (const f of frames) this.write(f);
    else this.framesWhileUnplugged += frames.length;
    while (this.rxQueue.length > 0 && this.rxQueue[0].atS <= t) {
      const bytes = this.rxQueue.shift()!.bytes;
      if (this.unplugged) continue;
      this.bytesFromConsole += bytes.length;
      for (const reply of this.opts.board.receive(bytes)) this.write(reply);
    }
    if (this.opts.durationS !== undefined && t >= this.opts.durationS) {
      await this.stop();
      return;
    }
    if (t >= this.nextUnplugS && !this.unplugged && this.opts.unplug) {
      this.nextUnplugS = t + this.opts.unplug.forS;
      await this.unplug();
    } else if (this.unplugged && t >= this.nextUnplugS && this.opts.unplug) {
      this.nextUnplugS = t + this.opts.unplug.everyS;
      await this.replug();
    }
  }

  /** Pull the cable: the pty disappears. The board keeps running (and counting). */
  async unplug(): Promise<void> {
    if (this.unplugged || !this.pty) return;
    this.unplugged = true;
    this.rxQueue.length = 0;
    this.reader?.stop();
    this.reader = null;
    const port = this.port;
    this.port = null;
    if (port?.isOpen) await new Promise<void>((r) => port.close(() => r()));
    await this.pty.close();
    this.opts.onEvent?.('unplugged', { atS: this.elapsedS() });
  }

  async replug(): Promise<void> {
    if (!this.unplugged || !this.pty) return;
    await this.pty.open();
    await this.openBoardPort(this.baudRate);
    this.write = (b) => this.port && writeDirect(this.port, b);
    this.unplugged = false;
    this.opts.onEvent?.('replugged', { atS: this.elapsedS() });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.reader?.stop();
    this.reader = null;
    const port = this.port;
    this.port = null;
    if (port?.isOpen) await new Promise<void>((r) => port.close(() => r()));
    await this.pty?.close();
    this.resolveDone();
  }
}
