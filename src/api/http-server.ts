/**
 * The API for a browser, on loopback only: Server-Sent Events for the
 * streams (GET /api/events?streams=live,health), POST /api for one request,
 * and the diagnostics page at /. The Host header must name the loopback
 * address (a web page elsewhere cannot reach the agent through DNS
 * rebinding), and POST must be application/json (no cross-site form posts).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { STREAMS, type ApiConnection, type ApiHub, type Stream } from './hub.js';
import { DIAGNOSTICS_PAGE } from './page.js';

export interface HttpServerOptions {
  host: '127.0.0.1' | '::1' | 'localhost';
  port: number;
  maxBodyBytes: number;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

export class HttpApiServer {
  private server: Server | null = null;
  private readonly open = new Set<ServerResponse>();
  port = 0;

  constructor(
    private readonly hub: ApiHub,
    private readonly opts: HttpServerOptions,
  ) {}

  async start(): Promise<number> {
    const server = createServer((req, res) => this.route(req, res));
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
      res.writeHead(403, { 'content-type': 'text/plain' }).end('loopback only\n');
      return;
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method === 'GET' && (url.pathname === '/' || url.pathname === '/index.html')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' }).end(DIAGNOSTICS_PAGE);
    } else if (req.method === 'GET' && url.pathname === '/api/events') {
      this.events(url, res);
    } else if (req.method === 'POST' && url.pathname === '/api') {
      this.post(req, res);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  }

  private events(url: URL, res: ServerResponse): void {
    const wanted = (url.searchParams.get('streams') ?? 'live').split(',').filter(Boolean);
    const bad = wanted.filter((s) => !(STREAMS as readonly string[]).includes(s) || s === 'capture');
    if (bad.length) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`unknown stream: ${bad.join(', ')}\n`);
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
    this.hub.attach(conn);
    this.hub.call(conn, 'subscribe', { streams: wanted });
  }

  private post(req: IncomingMessage, res: ServerResponse): void {
    if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) {
      res.writeHead(415, { 'content-type': 'text/plain' }).end('POST /api takes application/json\n');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      if (res.headersSent) return; // refused already: the rest is read and discarded
      size += d.length;
      if (size > this.opts.maxBodyBytes) {
        chunks.length = 0;
        res.writeHead(413, { 'content-type': 'application/json', connection: 'close' }).end(
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
      const reply = this.hub.respond(conn, Buffer.concat(chunks).toString('utf8'));
      res.writeHead(reply.error ? 400 : 200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(reply));
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
