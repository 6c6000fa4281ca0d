/**
 * sd_notify for a Node process: READY, WATCHDOG, STOPPING and STATUS as
 * datagrams to $NOTIFY_SOCKET. Node has no Unix datagram sockets, so this
 * uses the small native `unix-dgram` module (as Zigbee2MQTT does): one socket
 * for the life of the process, never a child process per ping.
 */
import { AgentError } from '../util/errors.js';
import { requireCjs } from '../util/require-cjs.js';

interface DgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, callback?: (err?: Error) => void): void;
  close(): void;
  on(event: 'error', listener: (err: Error) => void): void;
}
interface UnixDgram {
  createSocket(type: 'unix_dgram'): DgramSocket;
}

export class NotifySocketError extends AgentError<'notify_socket'> {
  constructor(message: string, options?: ErrorOptions) {
    super('notify_socket', message, options);
  }
}

export class SystemdNotifier {
  private readonly socket: DgramSocket;
  sent = 0;
  lastError: string | null = null;

  private constructor(
    readonly path: string,
    /** Ping at least this often (half of WatchdogSec), or null when systemd set no watchdog for this process. */
    readonly watchdogIntervalMs: number | null,
  ) {
    const dgram = requireCjs('unix-dgram') as UnixDgram;
    this.socket = dgram.createSocket('unix_dgram');
    this.socket.on('error', (err) => (this.lastError = err.message));
  }

  /** The notifier systemd asked for, or null when not run by systemd with Type=notify. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env, pid = process.pid): SystemdNotifier | null {
    const path = env.NOTIFY_SOCKET;
    if (!path) return null;
    if (path.startsWith('@'))
      throw new NotifySocketError(
        `NOTIFY_SOCKET ${path} is an abstract socket, which this agent cannot reach; systemd uses /run/systemd/notify`,
      );
    const usec = Number(env.WATCHDOG_USEC);
    // WATCHDOG_PID, when set, names the process the watchdog is for (not a child of it).
    const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === pid;
    const interval = Number.isFinite(usec) && usec > 0 && forUs ? Math.max(100, Math.floor(usec / 2000)) : null;
    return new SystemdNotifier(path, interval);
  }

  /** Send one notification ("READY=1", "WATCHDOG=1\nSTATUS=…"). Never throws: supervision must not crash the agent. */
  notify(state: string): void {
    const buf = Buffer.from(state, 'utf8');
    try {
      this.socket.send(buf, 0, buf.length, this.path, (err) => {
        if (err) this.lastError = err.message;
        else this.sent++;
      });
    } catch (err) {
      this.lastError = (err as Error).message;
    }
  }

  ready(status: string): void {
    this.notify(`READY=1\nSTATUS=${status}\nMAINPID=${process.pid}`);
  }

  watchdog(status?: string): void {
    this.notify(status ? `WATCHDOG=1\nSTATUS=${status}` : 'WATCHDOG=1');
  }

  stopping(status = 'stopping'): void {
    this.notify(`STOPPING=1\nSTATUS=${status}`);
  }

  close(): void {
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }
}
