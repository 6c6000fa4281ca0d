/**
 * The local API, independent of transport: newline-delimited JSON requests
 * in, responses and events out. The Unix socket and the loopback HTTP server
 * (SSE + POST) are thin transports around this.
 *
 * Request:  {"id": 1, "method": "ride.start", "params": {"member": "...", "classId": "..."}}
 * Response: {"id": 1, "result": {...}}  or  {"id": 1, "error": {"code": "bad_request", "message": "..."}}
 * Event:    {"event": "live", "data": {...}}
 *
 * A client is never allowed to slow the pipeline: every send checks the
 * client's queued bytes and drops a client over its limit, with a reason.
 *
 * What each method takes and returns, and every event's shape, is the
 * published contract (contracts/api.ts); this file is the dispatch and the
 * fan-out.
 *
 * Over 400 lines: the handlers and the event fan-out share each client's
 * subscriptions and the per-stream subscriber counts that make an unwatched
 * stream free; the live line is built by hand (no object per tick).
 */
import { issuesText } from '../util/zod-issues.js';
import { AgentError } from '../util/errors.js';
import type { z } from 'zod';
import {
  API_REVISION,
  API_VERSION,
  METHODS,
  PARAMS,
  RequestSchema,
  STREAMS,
  type ApiErrorCode,
  type Method,
  type MethodParams,
  type Stream,
} from '../contracts/api-requests.js';
import type { BoardInfoResult, EventData, EventName, History, MethodResult, PurgeResult } from '../contracts/api.js';
import type { AgentHealth, BoardUpdateStatus, RecentEntry, RideSummary } from '../contracts/health.js';
import type { LiveRecord } from '../metrics/record.js';

/** A refusal the API sends back as `{"error": {"code", "message"}}`. */
export class ApiError extends AgentError<ApiErrorCode> {}

export interface ApiReply {
  id: string | number | null;
  result?: unknown;
  error?: { code: ApiErrorCode; message: string };
}

/** What the hub needs from the agent: each method's result type is the contract's (contracts/api.ts). */
export interface ApiBackend {
  readonly deviceId: string;
  readonly agentVersion: string;
  health(): AgentHealth;
  startRide(member: string | null, classId: string | null): MethodResult<'ride.start'>;
  endRide(): RideSummary | null;
  currentRide(): RideSummary | null;
  listRides(q: { limit: number; beforeMs?: number; member?: string }): RideSummary[];
  getRide(ride: string): RideSummary | null;
  purgeMember(member: string): PurgeResult;
  history(seconds: number): History;
  recentLog(): RecentEntry[];
  /** The flywheel board's firmware: FW_INFO and the update job (fwp only; ApiError unavailable otherwise). */
  boardInfo(): Promise<BoardInfoResult>;
  boardUpload(offset: number, b64: string): MethodResult<'board.upload'>;
  boardUpdate(sha256: string): BoardUpdateStatus;
  /** Tee raw serial bytes to `onChunk` for `seconds`; returns a stop function. */
  startCapture(seconds: number, onChunk: (tMs: number, dir: number, bytes: Buffer) => void, onEnd: (reason: string) => void): () => void;
}

/** One connected client, whatever its transport. */
export interface ApiConnection {
  readonly id: number;
  readonly transport: 'unix' | 'sse' | 'http';
  /** Bytes queued to the client and not yet written out. */
  queuedBytes(): number;
  write(line: string): void;
  close(reason: string): void;
  subscriptions: Set<Stream>;
  capture?: () => void;
}

export interface HubCounters {
  connections: number;
  requests: number;
  errors: number;
  droppedSlow: number;
  eventsSent: number;
}

/** One method's work: its parameters as the contract parsed them, its result as the contract defines it. */
type Handler<M extends Method> = (c: ApiConnection, p: MethodParams<M>) => MethodResult<M> | Promise<MethodResult<M>>;
type Handlers = { [M in Method]: Handler<M> };

/**
 * What a local web page may reach over loopback HTTP. Every local user (and
 * any page in the tablet's browser) can connect to a TCP port, while the Unix
 * socket is 0660 (the agent's user and group): methods that act, or that read
 * a member's rides, are served on the socket only.
 */
export const PUBLIC_METHODS: ReadonlySet<Method> = new Set<Method>([
  'hello',
  'health',
  'subscribe',
  'unsubscribe',
  'ride.current',
  'live.history',
  'log.recent',
]);
export const PUBLIC_STREAMS: ReadonlySet<Stream> = new Set<Stream>(['live', 'summary', 'health', 'log']);

const isMethod = (m: string): m is Method => Object.hasOwn(PARAMS, m);
const isPublicTransport = (c: ApiConnection): boolean => c.transport !== 'unix';
const methodsFor = (c: ApiConnection): Method[] => (isPublicTransport(c) ? METHODS.filter((m) => PUBLIC_METHODS.has(m)) : METHODS);
const streamsFor = (c: ApiConnection): Stream[] => (isPublicTransport(c) ? STREAMS.filter((s) => PUBLIC_STREAMS.has(s)) : [...STREAMS]);

/** A request id is echoed only when it is one the schema accepts (a 60,000-character id is not sent back). */
function echoableId(x: unknown): string | number | null {
  if (typeof x === 'string' && x.length <= 64) return x;
  if (typeof x === 'number' && Number.isFinite(x)) return x;
  return null;
}

/** Internal errors are logged at most this often (one client must not flood the log or flush the recent-errors list). */
const INTERNAL_LOG_EVERY_MS = 10_000;

const zodMessage = (e: z.ZodError): string => issuesText(e, '(params)');

export interface HubOptions {
  clientQueueBytes: number;
  log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void };
  /** The number of `live` subscribers changed (the agent reads the board sooner while anyone watches). */
  onLiveWatchers?: (watchers: number) => void;
}

export class ApiHub {
  readonly counters: HubCounters = { connections: 0, requests: 0, errors: 0, droppedSlow: 0, eventsSent: 0 };
  private readonly clients = new Set<ApiConnection>();
  private nextId = 1;
  /** Subscribers per stream, so a tick with no subscribers costs nothing. */
  private readonly subscribers: Record<Stream, number> = { live: 0, summary: 0, health: 0, rides: 0, log: 0, capture: 0 };
  private summaryEvery = 0;
  private readonly powerSum = new Float64Array(2);
  private lastInternalLogMs = -Infinity;
  private internalSuppressed = 0;

  constructor(
    private readonly backend: ApiBackend,
    private readonly opts: HubOptions,
  ) {}

  newConnectionId(): number {
    return this.nextId++;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  stats() {
    return { clients: this.clients.size, ...this.counters };
  }

  attach(c: ApiConnection): void {
    this.clients.add(c);
    this.counters.connections++;
    this.sendEvent(c, 'hello', {
      api: API_VERSION,
      revision: API_REVISION,
      agent: this.backend.agentVersion,
      deviceId: this.backend.deviceId,
      methods: methodsFor(c),
      streams: streamsFor(c),
    });
  }

  detach(c: ApiConnection): void {
    if (!this.clients.delete(c)) return;
    const live = this.subscribers.live;
    for (const s of c.subscriptions) this.subscribers[s]--;
    c.subscriptions.clear();
    this.liveWatchersFrom(live);
    c.capture?.();
    c.capture = undefined;
  }

  /** One request line from a client; the reply goes back on the same connection. */
  handleLine(c: ApiConnection, line: string): void {
    const trimmed = line.trim();
    if (trimmed === '') return;
    const reply = this.respond(c, trimmed);
    if (reply instanceof Promise) void reply.then((r) => this.send(c, r));
    else this.send(c, reply);
  }

  /** The response object for one request text (HTTP POST sends it as its body); a promise for methods that wait on the board. */
  respond(c: ApiConnection, text: string): ApiReply | Promise<ApiReply> {
    this.counters.requests++;
    let id: string | number | null = null;
    try {
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (err) {
        throw new ApiError('parse_error', `not valid JSON: ${(err as Error).message}`);
      }
      if (json && typeof json === 'object' && !Array.isArray(json)) id = echoableId((json as { id?: unknown }).id);
      const req = RequestSchema.safeParse(json);
      if (!req.success) throw new ApiError('bad_request', `request must be {"id", "method", "params"}: ${zodMessage(req.error)}`);
      const result = this.call(c, req.data.method, req.data.params ?? {});
      if (result instanceof Promise) {
        const replyId = id;
        return result.then(
          (r: unknown) => ({ id: replyId, result: r ?? null }),
          (err: unknown) => this.errorReply(c, replyId, err),
        );
      }
      return { id, result: result ?? null };
    } catch (err) {
      return this.errorReply(c, id, err);
    }
  }

  private errorReply(c: ApiConnection, id: string | number | null, err: unknown): ApiReply {
    this.counters.errors++;
    const e = err instanceof ApiError ? err : new ApiError('internal', (err as Error).message);
    if (e.code === 'internal') this.logInternal(c, err);
    return { id, error: { code: e.code, message: e.message } };
  }

  private logInternal(c: ApiConnection, err: unknown): void {
    const now = performance.now();
    if (now - this.lastInternalLogMs < INTERNAL_LOG_EVERY_MS) {
      this.internalSuppressed++;
      return;
    }
    this.lastInternalLogMs = now;
    const suppressed = this.internalSuppressed;
    this.internalSuppressed = 0;
    this.opts.log.warn({ err, client: c.id, suppressed }, 'api request failed');
  }

  /** A request line was longer than the limit; its bytes were discarded. */
  lineTooLong(c: ApiConnection, limit: number): void {
    this.counters.requests++;
    this.counters.errors++;
    this.send(c, { id: null, error: { code: 'line_too_long', message: `request line longer than ${limit} bytes; discarded` } });
  }

  /** Run one request and return its result (HTTP POST uses this directly). */
  call(c: ApiConnection, method: string, rawParams: Record<string, unknown>): unknown {
    // Object.hasOwn, not `in`: "constructor" or "toString" is an unknown method, not an internal error.
    if (!isMethod(method))
      throw new ApiError('unknown_method', `unknown method "${method.slice(0, 64)}"; methods: ${methodsFor(c).join(', ')}`);
    if (isPublicTransport(c) && !PUBLIC_METHODS.has(method)) {
      throw new ApiError(
        'forbidden',
        `${method} is served on the Unix socket only (it acts, or reads a member's rides); over HTTP: ${methodsFor(c).join(', ')}`,
      );
    }
    const parsed = (PARAMS[method] as z.ZodTypeAny).safeParse(rawParams);
    if (!parsed.success) throw new ApiError('bad_request', `${method}: ${zodMessage(parsed.error)}`);
    // The method and its parameters were parsed together by PARAMS[method]: the handler of that method takes them.
    return (this.handlers[method] as Handler<Method>)(c, parsed.data as MethodParams<Method>);
  }

  private readonly handlers: Handlers = {
    hello: () => ({ api: API_VERSION, agent: this.backend.agentVersion, deviceId: this.backend.deviceId }),
    health: () => this.backend.health(),
    subscribe: (c, p) => this.subscription(c, 'subscribe', p.streams),
    unsubscribe: (c, p) => this.subscription(c, 'unsubscribe', p.streams),
    'ride.start': (_c, p) => this.backend.startRide(p.member ?? null, p.classId ?? null),
    'ride.end': () => {
      const s = this.backend.endRide();
      if (!s) throw new ApiError('no_ride', 'no ride in progress');
      return s;
    },
    'ride.current': () => this.backend.currentRide(),
    'rides.list': (_c, p) => {
      const beforeMs = p.before === undefined ? undefined : typeof p.before === 'number' ? p.before : Date.parse(p.before);
      return this.backend.listRides({ limit: p.limit, beforeMs, member: p.member });
    },
    'rides.get': (_c, p) => {
      const s = this.backend.getRide(p.ride);
      if (!s) throw new ApiError('not_found', `no ride ${p.ride}`);
      return s;
    },
    'member.purge': (_c, p) => this.backend.purgeMember(p.member),
    'live.history': (_c, p) => this.backend.history(p.seconds),
    'log.recent': () => this.backend.recentLog(),
    'capture.start': (c, p) => {
      if (c.transport === 'http') throw new ApiError('bad_request', 'capture needs a streaming connection (Unix socket or SSE)');
      if (c.capture) throw new ApiError('busy', 'a capture is already running on this connection');
      c.subscriptions.add('capture');
      this.subscribers.capture++;
      c.capture = this.backend.startCapture(
        p.seconds,
        (tMs, dir, bytes) => this.sendEvent(c, 'capture', { tMs, dir: dir === 1 ? 1 : 0, b64: bytes.toString('base64') }),
        (reason) => {
          if (c.subscriptions.delete('capture')) this.subscribers.capture--;
          c.capture = undefined;
          this.sendEvent(c, 'capture.end', { reason });
        },
      );
      return { seconds: p.seconds };
    },
    'capture.stop': (c) => {
      if (!c.capture) throw new ApiError('not_found', 'no capture running on this connection');
      c.capture();
      return { stopped: true };
    },
    'board.info': () => this.backend.boardInfo(),
    'board.upload': (_c, p) => this.backend.boardUpload(p.offset, p.data),
    'board.update': (_c, p) => this.backend.boardUpdate(p.sha256),
  };

  private subscription(c: ApiConnection, m: 'subscribe' | 'unsubscribe', streams: Stream[]): MethodResult<'subscribe'> {
    // Every stream is checked before any is applied: a refused request changes nothing.
    if (streams.includes('capture')) throw new ApiError('bad_request', 'use capture.start for the capture stream');
    const refused = isPublicTransport(c) ? streams.filter((s) => !PUBLIC_STREAMS.has(s)) : [];
    if (refused.length) throw new ApiError('forbidden', `stream ${refused.join(', ')} is served on the Unix socket only`);
    const live = this.subscribers.live;
    for (const s of streams) {
      const has = c.subscriptions.has(s);
      if (m === 'subscribe' && !has) {
        c.subscriptions.add(s);
        this.subscribers[s]++;
      } else if (m === 'unsubscribe' && has) {
        c.subscriptions.delete(s);
        this.subscribers[s]--;
      }
    }
    this.liveWatchersFrom(live);
    return { subscriptions: [...c.subscriptions] };
  }

  /** Tell the owner when the live subscribers changed from `before`. */
  private liveWatchersFrom(before: number): void {
    if (this.subscribers.live !== before) this.opts.onLiveWatchers?.(this.subscribers.live);
  }

  /** Per 10 Hz record: live to its subscribers, a 1 Hz summary every tenth. Free when nobody listens. */
  onRecord(r: LiveRecord): void {
    if (this.subscribers.summary > 0) {
      const p = r.powerW;
      if (p === p) {
        this.powerSum[0] += p;
        this.powerSum[1]++;
      }
    }
    if (this.subscribers.live > 0) this.broadcast('live', liveLine(r));
    if (++this.summaryEvery >= 10) {
      this.summaryEvery = 0;
      if (this.subscribers.summary > 0) {
        const n = this.powerSum[1];
        const ride = this.backend.currentRide();
        const data: EventData<'summary'> = {
          tUs: r.tUs,
          powerW: n > 0 ? Math.round((this.powerSum[0] / n) * 10) / 10 : null,
          cadenceRpm: fin(r.cadenceRpm, 1),
          hrBpm: fin(r.hrBpm, 0),
          speedKmh: fin(r.speedKmh, 2),
          resistancePct: fin(r.resistancePct, 1),
          distanceM: fin(r.distanceM, 1),
          energyKj: fin(r.energyKj, 3),
          ride: ride ? { ride: ride.ride, durationS: ride.durationS, avgPowerW: ride.avgPowerW, member: ride.member !== null } : null,
        };
        this.powerSum.fill(0);
        this.broadcastEvent('summary', 'summary', data);
      }
    }
  }

  /** Once a second from the agent. */
  tickHealth(): void {
    if (this.subscribers.health > 0) this.broadcastEvent('health', 'health', this.backend.health());
  }

  /**
   * The board leaves its application for a firmware update, or comes back:
   * to `live` subscribers, so the app shows "updating" instead of figures that
   * stopped (no records come while the bootloader runs; the first after it is
   * flagged gap_before).
   */
  boardEvent(data: EventData<'board'>): void {
    if (this.subscribers.live > 0) this.broadcastEvent('live', 'board', data);
  }

  rideEvent(state: 'started' | 'ended', summary: RideSummary): void {
    if (this.subscribers.rides > 0) this.broadcastEvent('rides', 'ride', { state, ...summary });
  }

  logEvent(e: RecentEntry): void {
    if (this.subscribers.log > 0) this.broadcastEvent('log', 'log', e);
  }

  closeAll(reason: string): void {
    for (const c of [...this.clients]) {
      c.close(reason);
      this.detach(c);
    }
  }

  private broadcast(stream: Stream, line: string): void {
    for (const c of this.clients) {
      if (c.subscriptions.has(stream)) this.sendLine(c, line);
    }
  }

  private broadcastEvent<E extends EventName>(stream: Stream, event: E, data: EventData<E>): void {
    this.broadcast(stream, JSON.stringify({ event, data }));
  }

  private sendEvent<E extends EventName>(c: ApiConnection, event: E, data: EventData<E>): void {
    this.send(c, { event, data });
  }

  private send(c: ApiConnection, msg: unknown): void {
    this.sendLine(c, JSON.stringify(msg));
  }

  private sendLine(c: ApiConnection, line: string): void {
    if (!this.clients.has(c)) return;
    if (c.queuedBytes() + line.length > this.opts.clientQueueBytes) {
      this.counters.droppedSlow++;
      const reason = `slow client: more than ${this.opts.clientQueueBytes} bytes waiting to be read`;
      this.opts.log.warn({ client: c.id, transport: c.transport, queuedBytes: c.queuedBytes(), reason }, 'api client dropped');
      this.detach(c);
      c.close(reason);
      return;
    }
    this.counters.eventsSent++;
    c.write(line);
  }
}

const fin = (v: number, digits: number): number | null => (Number.isFinite(v) ? Number(v.toFixed(digits)) : null);

function liveLine(r: LiveRecord): string {
  // Built by hand: one string per tick for all subscribers, no intermediate object.
  return (
    '{"event":"live","data":{"tUs":' +
    r.tUs +
    ',"cadenceRpm":' +
    fin(r.cadenceRpm, 1) +
    ',"powerW":' +
    fin(r.powerW, 1) +
    ',"resistancePct":' +
    fin(r.resistancePct, 1) +
    ',"flywheelRpm":' +
    fin(r.flywheelRpm, 1) +
    ',"speedKmh":' +
    fin(r.speedKmh, 2) +
    ',"hrBpm":' +
    fin(r.hrBpm, 0) +
    ',"distanceM":' +
    fin(r.distanceM, 1) +
    ',"energyKj":' +
    fin(r.energyKj, 3) +
    ',"flags":' +
    r.flags +
    '}}'
  );
}
