/**
 * The API on a Unix domain socket: mode 0660, so only the agent's user and
 * group (the console app's user is put in that group) can connect. A stale
 * socket file from a crash is replaced; a live one (another agent running)
 * is left alone and reported.
 */
import { AgentError } from '../util/errors.js';
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Stream } from '../contracts/api.js';
import type { ApiConnection, ApiHub } from './hub.js';

export interface UnixServerOptions {
  path: string;
  maxLineBytes: number;
  maxClients: number;
  /** A client with no subscription that sends nothing for this long is closed (idle connections cannot lock others out). */
  idleTimeoutMs: number;
}

export class SocketInUseError extends AgentError<'socket_in_use'> {
  constructor(message: string) {
    super('socket_in_use', message);
  }
}

/** api.socketPath names something that is not a socket (a regular file, a folder): it is left alone. */
export class SocketPathError extends AgentError<'socket_path'> {
  constructor(message: string, options?: ErrorOptions) {
    super('socket_path', message, options);
  }
}

/** Remove a stale socket file; anything else at the path is refused, never deleted. */
function removeStaleSocket(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return; // nothing there
  }
  if (!st.isSocket()) throw new SocketPathError(`api.socketPath: ${path} exists and is not a socket; refusing to replace it`);
  unlinkSync(path);
}

function probe(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export class UnixApiServer {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly hub: ApiHub,
    private readonly opts: UnixServerOptions,
  ) {}

  async start(): Promise<void> {
    const path = this.opts.path;
    mkdirSync(dirname(path), { recursive: true });
    if (await probe(path)) throw new SocketInUseError(`${path}: another process is serving the API (is a second agent running?)`);
    removeStaleSocket(path);
    const server = createServer((s) => this.onConnection(s));
    this.server = server;
    // The umask covers the window between bind and chmod.
    const old = process.umask(0o117);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(old);
    }
    chmodSync(path, 0o660);
  }

  private onConnection(socket: Socket): void {
    // First, for every socket: a client that resets the connection must not raise an unhandled 'error'.
    socket.on('error', () => socket.destroy());
    if (this.sockets.size >= this.opts.maxClients) {
      socket.end(`${JSON.stringify({ id: null, error: { code: 'busy', message: `too many API clients (${this.opts.maxClients})` } })}\n`);
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    this.sockets.add(socket);
    socket.setEncoding('utf8');
    const hub = this.hub;
    const max = this.opts.maxLineBytes;
    let closed = false;
    const conn: ApiConnection = {
      id: hub.newConnectionId(),
      transport: 'unix',
      subscriptions: new Set<Stream>(),
      queuedBytes: () => socket.writableLength,
      write: (line) => {
        if (!closed) socket.write(`${line}\n`);
      },
      close: (reason) => {
        if (closed) return;
        closed = true;
        // Said once, best effort: a client that does not read will not see it, the log has it.
        socket.end(`${JSON.stringify({ event: 'closing', data: { reason } })}\n`);
        setTimeout(() => socket.destroy(), 1000).unref();
      },
    };
    let buf = '';
    let discarding = false;
    socket.on('data', (chunk: string) => {
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf('\n', start);
        if (nl < 0) break;
        const piece = chunk.slice(start, nl);
        start = nl + 1;
        if (discarding) {
          discarding = false;
          continue;
        }
        const line = buf + piece;
        buf = '';
        if (Buffer.byteLength(line) > max) hub.lineTooLong(conn, max);
        else hub.handleLine(conn, line);
        if (closed) return;
      }
      if (discarding) return;
      buf += chunk.slice(start);
      if (Buffer.byteLength(buf) > max) {
        // Refuse now and skip to the next newline: no unbounded buffer for a client that never sends one.
        buf = '';
        discarding = true;
        hub.lineTooLong(conn, max);
      }
    });
    const gone = (): void => {
      closed = true;
      this.sockets.delete(socket);
      hub.detach(conn);
    };
    socket.on('close', gone);
    // Idle: no byte either way for idleTimeoutMs. A subscriber that is sent events is never idle; one
    // subscribed to a quiet stream (rides, log) is kept; a connection that only holds a place is closed.
    socket.setTimeout(this.opts.idleTimeoutMs);
    socket.on('timeout', () => {
      if (conn.subscriptions.size === 0 && !conn.capture) conn.close(`idle for ${Math.round(this.opts.idleTimeoutMs / 1000)} s`);
    });
    hub.attach(conn);
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      unlinkSync(this.opts.path);
    } catch {
      // already gone
    }
  }
}
