/**
 * The local API's transports: the Unix socket always, the loopback HTTP port
 * (diagnostics page, browser API) when configured. A transport that cannot
 * start is logged and the agent goes on without it.
 */
import type { HttpApiServer } from '../api/http-server.js';
import type { ApiHub } from '../api/hub.js';
import { resolveSocketPath } from '../api/socket-path.js';
import { UnixApiServer } from '../api/unix-server.js';
import type { AgentConfig } from '../config/schema.js';
import type { Logger } from '../log/logger.js';

export class ApiServers {
  private unix: UnixApiServer | null = null;
  private http: HttpApiServer | null = null;
  private path: string | null = null;

  constructor(
    private readonly hub: ApiHub,
    private readonly config: AgentConfig,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const a = this.config.api;
    const path = resolveSocketPath(this.config);
    try {
      const server = new UnixApiServer(this.hub, {
        path,
        maxLineBytes: a.maxLineBytes,
        maxClients: a.maxClients,
        idleTimeoutMs: a.idleTimeoutS * 1000,
      });
      await server.start();
      this.unix = server;
      this.path = path;
      this.log.info({ socket: path }, 'api listening');
    } catch (err) {
      this.log.error({ err, socket: path }, 'api socket unavailable');
    }
    if (a.httpPort > 0) {
      try {
        // Loaded only where the diagnostics page is on (off as installed): its server and page cost memory.
        const { HttpApiServer } = await import('../api/http-server.js');
        const http = new HttpApiServer(this.hub, {
          host: a.httpHost,
          port: a.httpPort,
          maxBodyBytes: a.maxLineBytes,
          maxStreams: a.maxHttpStreams,
          log: this.log,
        });
        const port = await http.start();
        this.http = http;
        this.log.info(
          { url: `http://${a.httpHost === '::1' ? '[::1]' : a.httpHost}:${port}/` },
          'diagnostics page and browser api listening',
        );
      } catch (err) {
        this.log.error({ err, port: a.httpPort }, 'api http port unavailable');
      }
    }
  }

  /** The socket the API listens on, null when it could not start. */
  get socketPath(): string | null {
    return this.unix ? this.path : null;
  }

  get httpPort(): number | null {
    return this.http ? this.http.port : null;
  }

  async stop(): Promise<void> {
    await this.unix?.stop();
    await this.http?.stop();
    this.unix = null;
    this.http = null;
  }
}
