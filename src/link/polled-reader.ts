/**
 * Reads an open serialport's file descriptor on the event loop instead of
 * through its stream.
 *
 * serialport's stream reads with a promisified fs.read on the libuv
 * threadpool and retries until EAGAIN: about three thread handoffs and
 * wakeups per 28-byte frame, 2-3 % of a core at 50 Hz on the bike tablet.
 * Here one non-blocking readSync drains the fd; while data keeps coming the
 * next read is a timer `coalesceMs` later (one wakeup per period however many
 * frames arrived), and only when the fd was empty does the binding's own
 * poller (epoll on the main thread) wait for the next byte. Port opening,
 * termios, writes and closing stay with serialport. The bytes are handed on
 * in the reader's one buffer, valid during the call: nothing is allocated
 * per read.
 */
import { readSync } from 'node:fs';
import type { SerialPortStream } from '@serialport/stream';
import type { ByteSink } from './frame-splitter.js';

interface PollableBinding {
  fd: number | null;
  poller: { once(event: 'readable', cb: (err: Error | null) => void): unknown };
}

function pollable(binding: unknown): binding is PollableBinding {
  const b = binding as Partial<PollableBinding> | null;
  return !!b && typeof b.fd === 'number' && !!b.poller && typeof b.poller.once === 'function';
}

const BACKLOG_BYTES = 2048;

/** Error codes of a read that mean the device is gone (USB unplug, pty hangup). */
const GONE = new Set(['EIO', 'ENXIO', 'ENODEV', 'EBADF']);

export class PolledReader {
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly buf: Buffer;

  private constructor(
    private readonly binding: PollableBinding,
    private readonly onData: ByteSink,
    private readonly onLost: (reason: string) => void,
    private readonly coalesceMs: number,
    bufferBytes: number,
  ) {
    this.buf = Buffer.alloc(bufferBytes);
  }

  /** A reader for `port`, or null where its binding cannot be polled (not Linux/macOS). */
  static attach(
    port: SerialPortStream,
    onData: ByteSink,
    onLost: (reason: string) => void,
    coalesceMs: number,
    bufferBytes = 16384,
  ): PolledReader | null {
    if (!pollable(port.port)) return null;
    const r = new PolledReader(port.port, onData, onLost, coalesceMs, bufferBytes);
    r.waitReadable();
    return r;
  }

  /** Read as soon as bytes come, not paced (a firmware transfer waits on every acknowledgement). */
  lowLatency = false;

  private ownerPacedNow = false;
  /** The poller is waiting for a byte (at most one wait at a time). */
  private armed = false;

  /** True while the reader reads only when its owner calls readNow() (setOwnerPaced). */
  get ownerPaced(): boolean {
    return this.ownerPacedNow;
  }

  /**
   * On: read only when the owner calls readNow() (on a beat of its own that
   * wakes the process anyway), with no timer or poller of the reader's own.
   * Off: back to the reader's own pacing, starting with a read now.
   */
  setOwnerPaced(on: boolean): void {
    if (on === this.ownerPacedNow) return;
    this.ownerPacedNow = on;
    if (on) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
    } else if (!this.stopped) this.read();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** The next read `coalesceMs` from now, on one timer re-armed each time (no new timer per read). */
  private readLater(): void {
    if (this.timer) this.timer.refresh();
    else this.timer = setTimeout(this.read, this.coalesceMs);
  }

  private waitReadable(): void {
    if (this.stopped || this.armed) return;
    this.armed = true;
    this.binding.poller.once('readable', this.onReadable);
  }

  private onReadable = (err: Error | null): void => {
    this.armed = false;
    if (this.stopped) return;
    if (err) {
      // The poller is cancelled when serialport closes the port; anything else is a lost device.
      this.stop();
      this.onLost(`poll: ${err.message}`);
      return;
    }
    this.read();
  };

  /**
   * Deliver whatever the kernel holds right now, without changing when the
   * next paced read comes. For a request's timeout: after the event loop was
   * held up (a slow commit, a busy CPU), timers run before I/O, so a reply
   * that arrived in time would otherwise be judged missing.
   */
  readNow(): void {
    for (let i = 0; i < 4 && this.readOnce() === this.buf.length; i++) {
      // a full buffer: there may be more
    }
  }

  /** One non-blocking read delivered to onData: bytes read, 0 when none were waiting, -1 when the port is gone. */
  private readOnce(): number {
    if (this.stopped) return -1;
    const fd = this.binding.fd;
    if (fd === null) return -1;
    let n: number;
    try {
      n = readSync(fd, this.buf, 0, this.buf.length, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? '';
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR') return 0;
      this.stop();
      this.onLost(GONE.has(code) ? 'device disconnected' : `read: ${(e as Error).message}`);
      return -1;
    }
    if (n === 0) {
      // End of file on a terminal: the other side hung up.
      this.stop();
      this.onLost('device disconnected');
      return -1;
    }
    // The reader's own buffer, no copy: the link splits frames out of it before the next read.
    this.onData(this.buf, 0, n);
    return n;
  }

  private read = (): void => {
    const n = this.readOnce();
    if (n < 0 || this.ownerPacedNow) return;
    // Nothing waiting: sleep in epoll until the next byte.
    if (n === 0) this.waitReadable();
    // A read of more than a 115200-baud line carries in 100 ms means a backlog
    // (a burst, or the tty buffer filled): catch up before coalescing again.
    else if (n >= BACKLOG_BYTES) setImmediate(this.read);
    else if (this.coalesceMs > 0 && !this.lowLatency) this.readLater();
    else this.waitReadable();
  };
}
