/**
 * The API for a browser, on loopback only: Server-Sent Events for the
 * streams (GET /api/events?streams=live,health), POST /api for one request,
 * and the diagnostics page at /. The Host header must name the loopback
 * address (a web page elsewhere cannot reach the agent through DNS
 * rebinding), and POST must be application/json (no cross-site form posts).
 *
 * Any local user and any page in the tablet's browser can reach a loopback
 * port, so this transport serves only the hub's public methods and streams
 * (hub.ts, PUBLIC_METHODS), caps its event streams, and never lets a request
 * throw out of the handler: a malformed request target gets a 400, anything
 * unforeseen a 500 and one log line, and the agent goes on.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { STREAMS, type Stream } from '../contracts/api-requests.js';
import { ApiError, PUBLIC_STREAMS, type ApiConnection, type ApiHub } from './hub.js';
import { DIAGNOSTICS_PAGE } from './page.js';

export interface HttpServerOptions {
  host: '127.0.0.1' | '::1' | 'localhost';
  port: number;
  maxBodyBytes: number;
  /** Event streams open at once; more get 503 (each holds a socket and kernel buffers). */
  maxStreams: number;
  log: { warn(obj: object, msg: string): void };
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** A request target we serve: origin-form only ("/path?query"); everything else is refused before parsing. */
export function parseTarget(target: string | undefined): { path: string; query: URLSearchParams } | null {
  if (!target || target[0] !== '/' || target[1] === '/' || target.length > 2048) return null;
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  // URLSearchParams never throws: malformed escapes are kept as they are.
  return { path, query: new URLSearchParams(q < 0 ? '' : target.slice(q + 1)) };
}

function plain(res: ServerResponse, status: number, text: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'text/plain', 'x-content-type-options': 'nosniff' }).end(`${text}\n`);
}

export class HttpApiServer {
  private server: Server | null = null;
  private readonly open = new Set<ServerResponse>();
  port = 0;

  constructor(
    private readonly hub: ApiHub,
    private readonly opts: HttpServerOptions,
  ) {}

  get streams(): number {
    return this.open.size;
  }

  async start(): Promise<number> {
    const server = createServer((req, res) => {
      try {
        this.route(req, res);
      } catch (err) {
        // The last guard for this transport: nothing a request does may reach the process's exception handler.
        this.opts.log.warn({ err, target: (req.url ?? '').slice(0, 200) }, 'http api request failed');
        plain(res, 500, 'internal error');
      }
    });
    // Slow or half-open clients cannot hold sockets for ever.
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    server.keepAliveTimeout = 5_000;
    server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n');
      else socket.destroy();
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  private route(req: IncomingMessage, res: ServerResponse): void {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (!LOOPBACK_HOSTS.has(host)) {
      plain(res, 403, 'loopback only');
      return;
    }
    const target = parseTarget(req.url);
    if (!target) {
      plain(res, 400, 'bad request target');
      return;
    }
    const path = target.path;
    if (req.method === 'GET' && (path === '/' || path === '/index.html')) {
      res
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
        .end(DIAGNOSTICS_PAGE);
    } else if (req.method === 'GET' && path === '/api/events') {
      this.events(target.query, res);
    } else if (req.method === 'POST' && path === '/api') {
      this.post(req, res);
    } else {
      plain(res, 404, 'not found');
    }
  }

  private events(query: URLSearchParams, res: ServerResponse): void {
    const wanted = [...new Set((query.get('streams') ?? 'live').split(',').filter(Boolean))];
    if (wanted.length === 0) {
      plain(res, 400, `streams: name at least one of ${[...PUBLIC_STREAMS].join(', ')}`);
      return;
    }
    const unknown = wanted.filter((s) => !(STREAMS as readonly string[]).includes(s));
    if (unknown.length) {
      plain(res, 400, `unknown stream: ${unknown.join(', ').slice(0, 200)}`);
      return;
    }
    const refused = wanted.filter((s) => !PUBLIC_STREAMS.has(s as Stream));
    if (refused.length) {
      plain(res, 403, `stream ${refused.join(', ')} is served on the Unix socket only`);
      return;
    }
    if (this.open.size >= this.opts.maxStreams) {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '5' }).end(`too many event streams (${this.opts.maxStreams})\n`);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.socket?.setNoDelay(true);
    this.open.add(res);
    let closed = false;
    const conn: ApiConnection = {
      id: this.hub.newConnectionId(),
      transport: 'sse',
      subscriptions: new Set<Stream>(),
      queuedBytes: () => res.writableLength,
      write: (line) => {
        if (!closed) res.write(`data: ${line}\n\n`);
      },
      close: () => {
        if (closed) return;
        closed = true;
        res.destroy();
      },
    };
    res.on('close', () => {
      closed = true;
      this.open.delete(res);
      this.hub.detach(conn);
    });
    res.on('error', () => res.destroy());
    this.hub.attach(conn);
    try {
      this.hub.call(conn, 'subscribe', { streams: wanted });
    } catch (err) {
      // Checked above; should the hub still refuse, the client hears why and the stream ends.
      const e = err instanceof ApiError ? err : new ApiError('internal', 'subscribe failed');
      conn.write(JSON.stringify({ id: null, error: { code: e.code, message: e.message } }));
      res.end();
    }
  }

  private post(req: IncomingMessage, res: ServerResponse): void {
    if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) {
      plain(res, 415, 'POST /api takes application/json');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('error', () => res.destroy());
    req.on('data', (d: Buffer) => {
      if (res.headersSent) return; // refused already: the rest is read and discarded
      size += d.length;
      if (size > this.opts.maxBodyBytes) {
        chunks.length = 0;
        res
          .writeHead(413, { 'content-type': 'application/json', connection: 'close' })
          .end(
            JSON.stringify({ id: null, error: { code: 'line_too_long', message: `request longer than ${this.opts.maxBodyBytes} bytes` } }),
          );
        return;
      }
      chunks.push(d);
    });
    req.on('end', () => {
      if (res.headersSent) return;
      const conn: ApiConnection = {
        id: this.hub.newConnectionId(),
        transport: 'http',
        subscriptions: new Set<Stream>(),
        queuedBytes: () => 0,
        write: () => {},
        close: () => {},
      };
      void Promise.resolve(this.hub.respond(conn, Buffer.concat(chunks).toString('utf8'))).then((reply) => {
        const status = !reply.error ? 200 : reply.error.code === 'forbidden' ? 403 : reply.error.code === 'internal' ? 500 : 400;
        res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(reply));
      });
    });
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    for (const r of this.open) r.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
