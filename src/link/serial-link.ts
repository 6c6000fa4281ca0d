/**
 * The serial link: opens the configured port, splits the byte stream into
 * frames, and keeps the port open through unplug/replug. Knows bytes, not
 * meanings: frames go to one handler, which is the protocol driver.
 */
import type { LinkHealth } from '../contracts/health.js';
import { EventEmitter } from 'node:events';
import type * as SerialStream from '@serialport/stream';
import type * as SerialBindings from '@serialport/bindings-cpp';
import { requireCjs } from '../util/require-cjs.js';
import { Backoff } from './backoff.js';
import { FrameSplitter, type Framing } from './frame-splitter.js';
import { PolledReader } from './polled-reader.js';
import { writeDirect } from './direct-write.js';
import type { Heartbeat } from '../util/heartbeat.js';

// The stream and the platform's binding, which is all `new SerialPort()` is, without the `serialport` package's
// index: that loads its eleven frame parsers and a mock binding the agent never uses (1.3 MB of RSS, measured in
// an empty `node`; docs/performance.md).
const { SerialPortStream } = requireCjs('@serialport/stream') as typeof SerialStream;
const { autoDetect } = requireCjs('@serialport/bindings-cpp') as typeof SerialBindings;
const binding = autoDetect();
type SerialPort = SerialStream.SerialPortStream<SerialBindings.AutoDetectTypes>;

/** After writing to the board, how long the link reads at its own pace for the reply (setUnwatched). */
const REPLY_WINDOW_MS = 2000;
/** The longest beat the link is read on: what a second of a fast board leaves in the tty's buffer. */
const MAX_BEAT_READ_MS = 1000;

export type LinkState = 'closed' | 'opening' | 'open' | 'waiting' | 'stopped';

export interface SerialLinkOptions {
  path: string;
  baudRate: number;
  /** How the bytes become frames: split at 0x00 under a length cap, or handed to the driver as they come. */
  framing: Framing;
  reopenBaseMs: number;
  reopenCapMs: number;
  /**
   * An open port that delivers no byte for this long is treated as lost and
   * reopened: a pulled cable on a USB adapter that stays plugged in gives
   * silence, not an error. 0 disables.
   */
  silenceTimeoutMs: number;
  /**
   * Pause between reads so bytes arriving together cost one wakeup (see
   * PolledReader). Adds at most this much latency; 0 reads as soon as possible.
   */
  readCoalesceMs: number;
  /**
   * The owner's periodic timer: the silence check rides on it instead of a
   * timer of its own where its beat is fine enough (timeout at least three beats).
   */
  heartbeat?: Heartbeat;
}

export class LinkCounters {
  bytesIn = 0;
  bytesOut = 0;
  /** Frames split off at 0x00 (before any decoding; link/frame-splitter.ts). */
  framesIn = 0;
  /** Frames dropped for exceeding the maximum length. */
  oversized = 0;
  opens = 0;
  openFailures = 0;
  disconnects = 0;
  /** Reopens forced by the silence watchdog. */
  silenceTimeouts = 0;
}

export interface LinkEvents {
  state: [state: LinkState, detail: { reason?: string; retryInMs?: number }];
  open: [];
}

/**
 * Emits `state` on every transition and `open` each time the port is opened,
 * so the driver can greet the board again after a replug.
 */
export class SerialLink extends EventEmitter<LinkEvents> {
  readonly counters = new LinkCounters();
  private port: SerialPort | null = null;
  private reader: PolledReader | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly backoff: Backoff;
  private currentState: LinkState = 'closed';
  private lastError: string | undefined;
  private stateSince = Date.now();
  private watchdog: NodeJS.Timeout | null = null;
  private bytesAtLastCheck = 0;
  private silentSinceMs = 0;

  constructor(private readonly opts: SerialLinkOptions) {
    super();
    // A floor so a flapping USB device is not reopened in a tight loop.
    this.backoff = new Backoff(opts.reopenBaseMs, opts.reopenCapMs, Math.min(100, opts.reopenBaseMs));
    this.splitter = opts.framing.kind === 'delimited' ? new FrameSplitter(opts.framing.maxFrame, opts.framing.onFrame) : null;
  }

  get state(): LinkState {
    return this.currentState;
  }

  get path(): string {
    return this.opts.path;
  }

  snapshot(): Omit<LinkHealth, 'path'> {
    return {
      state: this.currentState,
      since: this.stateSince,
      lastError: this.lastError,
      reads: this.readingOnBeat ? 'heartbeat' : 'paced',
      counters: this.counters,
    };
  }

  start(): void {
    if (this.currentState !== 'closed') return;
    this.opts.heartbeat?.every('serial read', this.opts.heartbeat.periodMs, this.onBeat, true);
    this.openNow();
    const timeout = this.opts.silenceTimeoutMs;
    if (timeout > 0) {
      const hb = this.opts.heartbeat;
      if (hb && timeout >= 3 * hb.periodMs) {
        hb.every('link silence check', hb.periodMs, () => this.checkSilence(hb.periodMs));
      } else {
        const every = Math.max(50, Math.min(1000, timeout / 4));
        this.watchdog = setInterval(() => this.checkSilence(every), every);
        this.watchdog.unref();
      }
    }
  }

  /** Compares byte counts between checks, so the receive path pays nothing for it. */
  private checkSilence(everyMs: number): void {
    if (this.currentState !== 'open') {
      this.silentSinceMs = 0;
      return;
    }
    if (this.counters.bytesIn !== this.bytesAtLastCheck) {
      this.bytesAtLastCheck = this.counters.bytesIn;
      this.silentSinceMs = 0;
      return;
    }
    this.silentSinceMs += everyMs;
    if (this.silentSinceMs < this.opts.silenceTimeoutMs) return;
    this.silentSinceMs = 0;
    if (this.port) this.lose(this.port, `no data for ${this.opts.silenceTimeoutMs} ms`);
  }

  /** Deliver the bytes the kernel holds now (see PolledReader.readNow); nothing where the port is read as a stream. */
  readNow(): void {
    if (this.currentState === 'open') this.reader?.readNow();
  }

  /** Raw bytes as they cross the link (capture for diagnostics; valid only during the call: copy to keep); null to stop. */
  setTap(tap: ((bytes: Buffer, dir: number) => void) | null): void {
    this.tap = tap;
    this.updatePacing();
  }

  /**
   * Nobody is watching the live figures (the agent says so from its API's
   * subscribers): read once a heartbeat, in the wake-up that commits and
   * uploads, instead of every readCoalesceMs. The records are the same (they
   * are timed by the board's clock); they reach the spool, the cloud and
   * `status` at most a beat later. The link reads at its own pace again at
   * once while anything needs it sooner: a live subscriber, a capture, a
   * firmware transfer, a reply to what was just sent to the board (the polled
   * bus sends ten times a second, so it is never read on the beat). Needs the
   * heartbeat option.
   */
  setUnwatched(on: boolean): void {
    this.unwatched = on;
    this.updatePacing();
  }

  private unwatched = false;

  /** True while the board is read on the heartbeat (setUnwatched), not at the link's own pace. */
  get readingOnBeat(): boolean {
    return this.reader?.ownerPaced ?? false;
  }

  /** Until when replies may be coming for something written to the board (ms, Date.now()). */
  private repliesUntilMs = 0;

  private updatePacing(): void {
    const hb = this.opts.heartbeat;
    const timeout = this.opts.silenceTimeoutMs;
    this.reader?.setOwnerPaced(
      this.unwatched &&
        !!hb &&
        hb.periodMs <= MAX_BEAT_READ_MS &&
        // The silence check must count beats too: a check of its own, between beats, would see silence.
        (timeout === 0 || timeout >= 3 * hb.periodMs) &&
        !this.lowLatency &&
        !this.tap &&
        Date.now() >= this.repliesUntilMs,
    );
  }

  /** On the heartbeat, first of its tasks: the beat's read while the link is read on the beat. */
  private readonly onBeat = (): void => {
    this.updatePacing();
    if (this.currentState === 'open' && this.reader?.ownerPaced) this.reader.readNow();
  };

  private tap: ((bytes: Buffer, dir: number) => void) | null = null;

  write(bytes: Buffer): boolean {
    const port = this.port;
    if (!port || this.currentState !== 'open') return false;
    this.counters.bytesOut += bytes.length;
    if (this.tap) this.tap(bytes, 1);
    writeDirect(port, bytes);
    if (this.unwatched) {
      // A request's reply is read as it comes, not a beat later.
      this.repliesUntilMs = Date.now() + REPLY_WINDOW_MS;
      if (this.reader?.ownerPaced) this.updatePacing();
    }
    return true;
  }

  async stop(): Promise<void> {
    this.setState('stopped', {});
    if (this.watchdog) clearInterval(this.watchdog);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.closePort();
  }

  private setState(state: LinkState, detail: { reason?: string; retryInMs?: number }): void {
    if (this.currentState === 'stopped') return;
    this.currentState = state;
    this.stateSince = Date.now();
    if (detail.reason) this.lastError = detail.reason;
    this.emit('state', state, detail);
  }

  private openNow(): void {
    if (this.currentState === 'stopped') return;
    this.setState('opening', {});
    // A fresh instance per open: a closed SerialPort does not relock its device on Linux.
    const port: SerialPort = new SerialPortStream({
      binding,
      path: this.opts.path,
      baudRate: this.opts.baudRate,
      dataBits: 8,
      stopBits: 1,
      parity: 'none',
      autoOpen: false,
    });
    this.port = port;
    port.open((err) => {
      if (this.port !== port) return;
      if (err) {
        this.counters.openFailures++;
        this.port = null;
        this.scheduleReopen(openFailure(this.opts.path, err));
        return;
      }
      this.onOpened(port);
    });
  }

  private onOpened(port: SerialPort): void {
    this.counters.opens++;
    this.backoff.reset();
    // A partial frame from before the reopen belongs to no frame.
    this.splitter?.reset();
    this.reader = PolledReader.attach(port, this.onBytes, (reason) => this.lose(port, reason), this.opts.readCoalesceMs);
    if (this.reader) this.reader.lowLatency = this.lowLatency;
    this.updatePacing();
    // Platforms whose binding cannot be polled read through serialport's stream.
    if (!this.reader) port.on('data', (chunk: Buffer) => this.onBytes(chunk, 0, chunk.length));
    port.on('error', (err: Error & { code?: string }) => {
      this.lastError = err.message;
      // serialport reports a hung-up pty or vanished USB device as EIO without closing.
      if (err.code === 'EIO' || err.code === 'ENXIO' || err.code === 'ENODEV') this.lose(port, 'device disconnected');
    });
    port.on('close', (err: (Error & { disconnected?: boolean }) | null) => {
      if (this.port !== port) return;
      this.lose(port, err?.disconnected ? 'device disconnected' : `port closed${err ? `: ${err.message}` : ''}`);
    });
    this.setState('open', {});
    this.emit('open');
  }

  private lowLatency = false;

  /** fwp's frames out of the bytes read (null for a protocol that frames its own stream). */
  private readonly splitter: FrameSplitter | null;

  /** Every read, from the reader's own buffer: counted, tapped when a capture runs, then split or handed on. */
  private readonly onBytes = (bytes: Buffer, start: number, end: number): void => {
    const counters = this.counters;
    counters.bytesIn += end - start;
    if (this.tap) this.tap(bytes.subarray(start, end), 0);
    const splitter = this.splitter;
    if (splitter) {
      splitter.feed(bytes, start, end);
      counters.framesIn = splitter.frames;
      counters.oversized = splitter.oversized;
    } else if (this.opts.framing.kind === 'stream') this.opts.framing.onData(bytes, start, end);
  };

  /**
   * Read each byte as it comes instead of pacing reads (readCoalesceMs):
   * for a firmware transfer, whose window waits on the board's
   * acknowledgements. Costs wake-ups; off again when the transfer ends.
   */
  setLowLatency(on: boolean): void {
    this.lowLatency = on;
    if (this.reader) this.reader.lowLatency = on;
    this.updatePacing();
  }

  /** The port stopped working: release it and try again later. */
  private lose(port: SerialPort, reason: string): void {
    if (this.port !== port) return;
    this.port = null;
    this.reader?.stop();
    this.reader = null;
    port.removeAllListeners('close');
    if (port.isOpen) port.close(() => {});
    if (this.currentState === 'stopped') return;
    if (reason.startsWith('no data')) this.counters.silenceTimeouts++;
    else this.counters.disconnects++;
    this.scheduleReopen(reason);
  }

  private scheduleReopen(reason: string): void {
    if (this.currentState === 'stopped') return;
    const delay = this.backoff.next();
    this.setState('waiting', { reason, retryInMs: delay });
    this.timer = setTimeout(() => {
      this.timer = null;
      this.openNow();
    }, delay);
  }

  private closePort(): Promise<void> {
    const port = this.port;
    this.port = null;
    this.reader?.stop();
    this.reader = null;
    if (!port || !port.isOpen) return Promise.resolve();
    return new Promise((resolve) => port.close(() => resolve()));
  }
}

/**
 * Why an open failed, said once: serialport's message repeats the path and
 * an "Error: " prefix ("Error: No such file or directory, cannot open
 * /dev/flywheel").
 */
export function openFailure(path: string, err: Error): string {
  const why = err.message.replace(/^Error: /, '').replace(`, cannot open ${path}`, '');
  return `cannot open ${path}: ${why}`;
}
