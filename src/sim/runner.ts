/**
 * Puts a SimBoard on a transport in real time: a pty (through socat) or a
 * writable stream. Also plays unplug/replug by tearing the pty down.
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import type { Writable } from 'node:stream';
import type { SimBoard } from './board.js';
import { PtyPair } from './pty.js';

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
    this.begin((b) => this.port?.write(b));
    return this.pty.consolePath;
  }

  private baudRate = 115200;

  /** Serve on a stream (stdout): raw bytes, no requests. */
  startOnStream(out: Writable): void {
    this.begin((b) => out.write(b));
  }

  private async openBoardPort(baudRate: number): Promise<void> {
    if (!this.pty) return;
    const port = new SerialPort({ path: this.pty.boardPath, baudRate, autoOpen: false });
    await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
    port.on('data', (chunk: Buffer) => {
      for (const reply of this.opts.board.receive(chunk)) port.write(reply);
    });
    port.on('error', () => {});
    this.port = port;
  }

  private write: (b: Buffer) => void = () => {};

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
    this.write = (b) => this.port?.write(b);
    this.unplugged = false;
    this.opts.onEvent?.('replugged', { atS: this.elapsedS() });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const port = this.port;
    this.port = null;
    if (port?.isOpen) await new Promise<void>((r) => port.close(() => r()));
    await this.pty?.close();
    this.resolveDone();
  }
}
