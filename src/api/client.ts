/**
 * A client of the local API (the CLI, the updater): one Unix socket connection, requests
 * matched to replies by id, events to a listener.
 */
import { AgentNotRunningError, ApiRequestError } from './errors.js';
import { createConnection, type Socket } from 'node:net';
import type { z } from 'zod';
import type { ApiErrorCode, Method, MethodResult, PARAMS } from '../contracts/api.js';
import type { AgentHealth } from '../contracts/health.js';
import { resolveSocketPath, type SocketSettings } from './socket-path.js';

export type EventListener = (event: string, data: unknown) => void;

export class ApiClient {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private listener: EventListener = () => {};
  private closedReason: string | null = null;
  private onCloseCb: (reason: string) => void = () => {};

  private constructor(private readonly socket: Socket) {
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line) this.onLine(line);
      }
    });
    socket.on('close', () => {
      const reason = this.closedReason ?? 'the agent closed the connection';
      for (const w of this.waiting.values()) w.reject(new Error(reason));
      this.waiting.clear();
      this.onCloseCb(reason);
    });
    socket.on('error', () => {});
  }

  /** Connect to the running agent; AgentNotRunningError when nothing listens. */
  static connect(path: string, timeoutMs = 2000): Promise<ApiClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new AgentNotRunningError(`the agent does not answer on ${path}`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new ApiClient(socket));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const why =
          err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'is not running' : `cannot be reached (${err.code ?? err.message})`;
        reject(new AgentNotRunningError(`the agent ${why}: no API socket at ${path}`));
      });
    });
  }

  static forConfig(config: SocketSettings, socketOption?: string, timeoutMs?: number): Promise<ApiClient> {
    return ApiClient.connect(socketOption ?? resolveSocketPath(config), timeoutMs);
  }

  private onLine(line: string): void {
    let msg: { id?: number; result?: unknown; error?: { code: ApiErrorCode; message: string }; event?: string; data?: unknown };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return;
    }
    if (msg.event) {
      if (msg.event === 'closing')
        this.closedReason = `the agent closed the connection: ${String((msg.data as { reason?: string })?.reason)}`;
      this.listener(msg.event, msg.data);
      return;
    }
    const w = typeof msg.id === 'number' ? this.waiting.get(msg.id) : undefined;
    if (!w) return;
    this.waiting.delete(msg.id as number);
    if (msg.error) w.reject(new ApiRequestError(msg.error.code, msg.error.message));
    else w.resolve(msg.result);
  }

  /** Call a method of the contract (contracts/api.ts); the result is typed by it. */
  request<M extends Method>(method: M, params: z.input<(typeof PARAMS)[M]> = {}): Promise<MethodResult<M>> {
    return this.requestRaw(method, params) as Promise<MethodResult<M>>;
  }

  /** Any method name and parameters, as a client outside the contract might send them (tests of refusals). */
  requestRaw(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.nextId++;
    return new Promise<unknown>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.socket.write(`${JSON.stringify({ id, method, params })}\n`);
    });
  }

  onEvent(listener: EventListener): void {
    this.listener = listener;
  }

  onClose(cb: (reason: string) => void): void {
    this.onCloseCb = cb;
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }
}

/** The running agent's health, or null when it does not answer (not running, stuck, restarting). */
export async function fetchAgentHealth(socketPath: string, timeoutMs = 1000): Promise<AgentHealth | null> {
  try {
    const c = await ApiClient.connect(socketPath, timeoutMs);
    try {
      return await c.request('health');
    } finally {
      c.close();
    }
  } catch {
    return null;
  }
}
