/**
 * The uploader: spool -> CBOR packets -> MQTT, QoS 1. The spool is the only
 * queue: a record leaves it when the broker has acknowledged (PUBACK) the
 * packet that carried it, never before. Anything in flight when a connection
 * drops is read from the spool again and re-sent on the next connection, as
 * whole packets whose sequence ranges let the cloud drop the duplicate.
 *
 * - a fresh MQTT.js client per connection attempt, its own reconnect off: our
 *   backoff is exponential with full jitter, so a fleet reconnecting after an
 *   outage spreads out (MQTT.js retries on a fixed period);
 * - MQTT 5 with a persistent session (falls back to 3.1.1 if the broker refuses 5);
 * - at most min(maxInflight, the broker's Receive Maximum) packets in flight,
 *   each within the broker's Maximum Packet Size;
 * - a token bucket on bytes, so a backlog never starves the class video, and
 *   live records first: what is committed after a (re)connection goes before
 *   the backlog left from the outage, which drains oldest first behind it;
 * - a retained status message (online, version, backlog) with an offline last will.
 *
 * Over 400 lines: the MQTT session, the in-flight window, gap reporting and
 * the outbox (ride and purge notices) share one connection's state and its
 * acknowledgements; apart, each would need the others' callbacks.
 */
import type { UploadStats } from '../contracts/health.js';
import type { DeviceStatus } from '../contracts/mqtt.js';
import { readTlsFiles, type TlsMaterial } from './login.js';
import type { IClientOptions, IConnackPacket, MqttClient } from 'mqtt';
import { connectMqtt } from './mqtt-connect.js';
import type { Logger } from '../log/logger.js';
import { Backoff } from '../link/backoff.js';
import type { Spool, SpoolRow } from '../spool/spool.js';
import { encodePacket } from './packet.js';
import { ServerLimits } from './limits.js';
import { TokenBucket } from './token-bucket.js';

export interface UploaderTls {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export interface UploaderOptions {
  url: string;
  deviceId: string;
  topicPrefix: string;
  agentVersion: string;
  /** How long the broker keeps the session while the bike is away. */
  sessionExpirySec: number;
  keepaliveSec: number;
  maxInflight: number;
  maxRecordsPerPacket: number;
  maxPacketBytes: number;
  /** Upload rate limit in bytes/s; 0 for none. */
  rateBytesPerS: number;
  /** Broker login (password read from a file by the caller; never logged). */
  username?: string;
  password?: string;
  /** Backlog drain limit (0: only the upload rate applies); the cloud may change it (limits.ts). */
  drainBytesPerS?: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  deflate: boolean;
  /** How often to look for newly committed records; 0: never by itself, the owner calls poll() (the agent's heartbeat). */
  pollMs: number;
  tls?: UploaderTls;
  log: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** The reconnect jitter's random source (seeded by the fleet simulator and tests). */
  random?: () => number;
}

export type UploaderState = 'idle' | 'connecting' | 'connected' | 'waiting' | 'stopped';

export class UploaderCounters {
  connects = 0;
  connectFailures = 0;
  disconnects = 0;
  packetsSent = 0;
  packetsAcked = 0;
  packetsRefused = 0;
  recordsAcked = 0;
  bytesSent = 0;
  maxInflightSeen = 0;
  protocolFallbacks = 0;
  noticesSent = 0;
  noticesAcked = 0;
}

/** Room for the PUBLISH fixed header, topic and properties within the broker's maximum. */
const PUBLISH_OVERHEAD = 256;
/** A read that found nothing (never modified: rows are only sliced). */
const NO_ROWS: readonly SpoolRow[] = [];

export class Uploader {
  readonly counters = new UploaderCounters();
  private client: MqttClient | null = null;
  private currentState: UploaderState = 'idle';
  private protocolVersion: 4 | 5 = 5;
  private inflight = 0;
  private window = 1;
  private maxPacket = Infinity;
  /** Backlog: highest sequence number sent on this connection from before it began. */
  private cursor = 0;
  /** Records from this sequence number on were committed during this connection: live. */
  private liveFrom = 0;
  /** Live: highest sequence number sent on this connection from liveFrom on. */
  private liveCursor = 0;
  private readonly gapsInFlight = new Set<number>();
  private outboxInflight = false;
  private readonly backoff: Backoff;
  private readonly drainBucket: TokenBucket;
  private readonly limits: ServerLimits;
  private readonly fleetLimitsTopic: string;
  private readonly deviceLimitsTopic: string;
  private readonly bucket: TokenBucket;
  private timer: NodeJS.Timeout | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private lastError: string | null = null;
  /** The last pump failed to read the spool (said once in the log until a pump succeeds). */
  private readFailing = false;
  private readonly topic: string;
  private readonly statusTopic: string;
  /** Read once: a missing file fails the constructor, naming its key. */
  private readonly tls: TlsMaterial;

  constructor(
    private readonly spool: Spool,
    private readonly opts: UploaderOptions,
  ) {
    this.backoff = new Backoff(opts.backoffBaseMs, opts.backoffCapMs, 0, opts.random ?? Math.random);
    this.bucket = new TokenBucket(opts.rateBytesPerS);
    this.drainBucket = new TokenBucket(opts.drainBytesPerS ?? 0);
    this.limits = new ServerLimits({
      uploadBytesPerS: opts.rateBytesPerS,
      drainBytesPerS: opts.drainBytesPerS ?? 0,
      backoffBaseMs: opts.backoffBaseMs,
    });
    this.fleetLimitsTopic = `${opts.topicPrefix}/fleet/limits`;
    this.deviceLimitsTopic = `${opts.topicPrefix}/${opts.deviceId}/limits`;
    this.topic = `${opts.topicPrefix}/${opts.deviceId}/telemetry`;
    this.statusTopic = `${opts.topicPrefix}/${opts.deviceId}/status`;
    this.tls = readTlsFiles(opts.tls);
  }

  get state(): UploaderState {
    return this.currentState;
  }

  start(): void {
    if (this.currentState !== 'idle') return;
    this.connect();
  }

  setRate(bytesPerS: number): void {
    this.setConfiguredLimit('uploadBytesPerS', bytesPerS);
  }

  /** Change a configured limit at run time; a limit the cloud set still takes precedence. */
  setConfiguredLimit(field: 'uploadBytesPerS' | 'drainBytesPerS', value: number): void {
    this.limits.setConfig(field, value);
    const l = this.limits.current();
    this.bucket.setRate(l.uploadBytesPerS);
    this.drainBucket.setRate(l.drainBytesPerS);
  }

  stats(): UploadStats {
    return {
      state: this.currentState,
      url: this.opts.url,
      protocolVersion: this.protocolVersion,
      inflight: this.inflight,
      window: this.window,
      maxPacketBytes: Number.isFinite(this.maxPacket) ? this.maxPacket : null,
      rateBytesPerS: this.bucket.bytesPerSecond,
      limits: this.limits.current(),
      lastError: this.lastError,
      counters: this.counters,
    };
  }

  private statusPayload(state: 'online' | 'offline'): string {
    const st = state === 'online' ? this.spool.stats() : null;
    // The spool's condition rides along: a bike on a full disk says so (and says when it recovered).
    const spool = st
      ? { condition: this.spool.condition, pendingRecords: st.pendingRecords, droppedInMemory: st.droppedInMemory }
      : undefined;
    const status: DeviceStatus = {
      state,
      deviceId: this.opts.deviceId,
      version: this.opts.agentVersion,
      backlog: st?.records,
      spool,
      limits: this.limits.current(),
      at: new Date().toISOString(),
    };
    return JSON.stringify(status);
  }

  private connect(): void {
    if (this.currentState === 'stopped') return;
    this.currentState = 'connecting';
    const v5 = this.protocolVersion === 5;
    const options: IClientOptions = {
      clientId: this.opts.deviceId,
      protocolVersion: this.protocolVersion,
      clean: false,
      keepalive: this.opts.keepaliveSec,
      reconnectPeriod: 0,
      connectTimeout: 15_000,
      queueQoSZero: false,
      // mqtt-packet otherwise builds a Buffer for each of the 65,536 two-byte numbers at the first packet: 6 MB
      // of heap (measured in a heap snapshot of the agent) to save a two-byte write per packet.
      writeCache: false,
      ...(this.opts.username ? { username: this.opts.username } : {}),
      ...(this.opts.password ? { password: this.opts.password } : {}),
      will: {
        topic: this.statusTopic,
        payload: Buffer.from(JSON.stringify({ state: 'offline', deviceId: this.opts.deviceId })),
        qos: 1,
        retain: true,
      },
      ...(v5 ? { properties: { sessionExpiryInterval: this.opts.sessionExpirySec } } : {}),
      ...this.tls,
    };
    const client = connectMqtt(this.opts.url, options);
    this.client = client;
    client.once('connect', (connack) => this.onConnected(client, connack));
    client.on('error', (err: Error & { code?: number }) => {
      this.lastError = err.message;
      // Brokers without MQTT 5 refuse the CONNECT: try 3.1.1 next time. The CONNACK's code says so (132 in MQTT 5,
      // 1 in 3.1.1); the wording is matched only for mqtt.js's own error when a broker answers without a usable code.
      if (v5 && (err.code === 132 || err.code === 1 || /unsupported protocol|unacceptable protocol/i.test(err.message))) {
        this.protocolVersion = 4;
        this.counters.protocolFallbacks++;
      }
    });
    client.on('close', () => this.onClosed(client));
  }

  private onConnected(client: MqttClient, connack: IConnackPacket): void {
    if (this.client !== client) return;
    this.currentState = 'connected';
    this.counters.connects++;
    this.backoff.reset();
    this.lastError = null;
    const props = connack.properties ?? {};
    this.window = Math.max(1, Math.min(this.opts.maxInflight, props.receiveMaximum ?? 65535));
    this.maxPacket = Math.min(this.opts.maxPacketBytes, props.maximumPacketSize ?? Infinity);
    this.inflight = 0;
    // Read from the start again: what the last connection got acknowledged must be gone first.
    this.spool.applyAcks();
    this.cursor = 0;
    this.liveFrom = (this.spool.stats().newestSeq ?? 0) + 1;
    this.liveCursor = this.liveFrom - 1;
    this.gapsInFlight.clear();
    this.outboxInflight = false;
    this.opts.log.info(
      { url: this.opts.url, protocolVersion: this.protocolVersion, window: this.window, maxPacketBytes: this.maxPacket },
      'uploader connected',
    );
    client.publish(this.statusTopic, this.statusPayload('online'), { qos: 1, retain: true });
    // Limits the cloud sets: retained, so they arrive now and whenever they change.
    client.on('message', (topic, payload) => {
      if (topic === this.fleetLimitsTopic || topic === this.deviceLimitsTopic) this.onLimits(client, topic, payload);
      else for (const s of this.extraSubscriptions) if (s.topics.includes(topic)) s.handler(topic, payload);
    });
    const topics = [this.fleetLimitsTopic, this.deviceLimitsTopic, ...this.extraSubscriptions.flatMap((s) => s.topics)];
    client.subscribe(topics, { qos: 1 }, (err) => {
      // Said once per connection: from here on, messages on these topics reach the agent.
      if (!err && this.client === client) this.opts.log.info({ topics }, 'subscribed');
    });
    if (this.opts.pollMs > 0) this.pollTimer = setInterval(() => this.pumpSafely(), this.opts.pollMs);
    this.pumpSafely();
  }

  private onClosed(client: MqttClient): void {
    // A stopping client is finished by stop(); acknowledgements still arriving are still applied.
    if (this.client !== client || this.currentState === 'stopped') return;
    this.client = null;
    client.removeAllListeners();
    client.on('error', () => {});
    client.end(true);
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    if (this.currentState === 'connected') this.counters.disconnects++;
    else this.counters.connectFailures++;
    // Whatever was in flight stays in the spool and goes again on the next connection.
    this.inflight = 0;
    this.gapsInFlight.clear();
    const delay = this.backoff.next();
    this.currentState = 'waiting';
    this.opts.log.warn({ retryInMs: delay, err: this.lastError }, 'uploader disconnected');
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delay);
  }

  private readonly extraSubscriptions: Array<{ topics: string[]; handler: (topic: string, payload: Buffer) => void }> = [];

  /** Topics other parts of the agent listen to on this session (exact names), subscribed on every connection. */
  subscribe(topics: string[], handler: (topic: string, payload: Buffer) => void): void {
    this.extraSubscriptions.push({ topics, handler });
    const c = this.client;
    if (c && this.currentState === 'connected') c.subscribe(topics, { qos: 1 });
  }

  /** Publish beside the telemetry (QoS 1); false when not connected (the caller decides whether it matters). */
  publish(topic: string, payload: string | Buffer, retain = false): boolean {
    const c = this.client;
    if (!c || this.currentState !== 'connected') return false;
    c.publish(topic, payload, { qos: 1, retain });
    return true;
  }

  /** Upload now: reconnect at once if waiting out a backoff, else send what is due. */
  uploadNow(): void {
    if (this.currentState === 'waiting' && this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
      this.connect();
    } else this.pumpSafely();
  }

  /** Publish the status again (the spool's condition changed). */
  refreshStatus(): void {
    const client = this.client;
    if (client && this.currentState === 'connected')
      client.publish(this.statusTopic, this.statusPayload('online'), { qos: 1, retain: true });
  }

  /** A limits message: applied at once (the buckets and the backoff), reported on the status topic. */
  private onLimits(client: MqttClient, topic: string, payload: Buffer): void {
    const scope = topic === this.fleetLimitsTopic ? 'fleet' : topic === this.deviceLimitsTopic ? 'device' : null;
    if (!scope) return;
    const err = this.limits.set(scope, payload);
    if (err) {
      this.lastError = err;
      this.opts.log.warn({ topic, err }, 'limits message ignored');
      return;
    }
    const l = this.limits.current();
    this.bucket.setRate(l.uploadBytesPerS);
    this.drainBucket.setRate(l.drainBytesPerS);
    this.backoff.setBase(l.backoffBaseMs);
    this.opts.log.info({ limits: l }, 'limits in force');
    if (this.client === client && this.currentState === 'connected')
      client.publish(this.statusTopic, this.statusPayload('online'), { qos: 1, retain: true });
    this.pumpSafely();
  }

  /** Send what is due (the owner's periodic poll when `pollMs` is 0). */
  poll(): void {
    this.pumpSafely();
  }

  /** pump() from a timer or callback: a spool that cannot be read right now is tried again later. */
  private pumpSafely(): void {
    try {
      this.pump();
    } catch (err) {
      this.lastError = (err as Error).message;
      // A state change, said once (every poll would fail the same way); it clears with "reads the spool again".
      if (!this.readFailing) this.opts.log.error({ err }, 'uploader cannot read the spool; trying again at every poll');
      this.readFailing = true;
      return;
    }
    if (this.readFailing) {
      this.readFailing = false;
      this.opts.log.info('uploader reads the spool again');
    }
  }

  /** Send packets while the window, the rate limit and the spool allow: live records first. */
  private pump(): void {
    const client = this.client;
    if (!client || this.currentState !== 'connected') return;
    while (this.inflight < this.window) {
      // Caught up with the last commit (most polls): nothing to read.
      let rows = this.liveCursor < this.spool.newestSeq ? this.spool.read(this.liveCursor, this.opts.maxRecordsPerPacket) : NO_ROWS;
      if (rows.length === 0 && this.cursor < this.liveFrom - 1) {
        rows = this.spool.read(this.cursor, this.opts.maxRecordsPerPacket);
        const end = rows.findIndex((r) => r[0] >= this.liveFrom);
        if (end >= 0) rows = rows.slice(0, end);
        // The backlog is sent; from here on everything is one stream.
        if (rows.length === 0) this.cursor = this.liveFrom - 1;
      }
      if (rows.length === 0) {
        this.pumpOutbox(client);
        return;
      }
      // One ride per packet (the packet's `ride` names it), and one engine epoch: after an
      // agent restart engine time starts again, and a packet's t_ms never goes backwards.
      const ride = rows[0][1];
      const cut = rows.findIndex((r, i) => r[1] !== ride || (i > 0 && r[2] < rows[i - 1][2]));
      if (cut > 0) rows = rows.slice(0, cut);
      const rideUuid = this.spool.rides.uuidOf(ride);
      const gaps = this.spool.unreportedGaps().filter((g) => !this.gapsInFlight.has(g.id));
      let n = rows.length;
      let bytes: Buffer;
      for (;;) {
        bytes = encodePacket({
          deviceId: this.opts.deviceId,
          ride: rideUuid,
          rows: n === rows.length ? rows : rows.slice(0, n),
          gaps,
          deflate: this.opts.deflate,
        });
        if (bytes.length + PUBLISH_OVERHEAD <= this.maxPacket || n === 1) break;
        n = Math.ceil(n / 2);
      }
      // Backlog bytes pass both the drain limit and the upload limit; live bytes only the upload limit.
      const backlog = rows[0][0] < this.liveFrom;
      const wait = Math.max(this.bucket.wait(bytes.length), backlog ? this.drainBucket.wait(bytes.length) : 0);
      if (wait === 0) {
        this.bucket.take(bytes.length);
        if (backlog) this.drainBucket.take(bytes.length);
      }
      if (wait > 0) {
        if (!this.timer) this.timer = setTimeout(() => ((this.timer = null), this.pumpSafely()), wait);
        return;
      }
      this.send(
        client,
        bytes,
        rows[0][0],
        rows[n - 1][0],
        gaps.map((g) => g.id),
      );
    }
  }

  /**
   * Ride summaries and purge notices, one at a time (they are few), after the
   * telemetry has caught up. Deleted from the outbox on acknowledgement.
   */
  private pumpOutbox(client: MqttClient): void {
    if (this.outboxInflight) return;
    // One at a time, oldest first: what is acknowledged is deleted, so the oldest left is the next.
    const msg = this.spool.outbox.oldest();
    if (!msg) return;
    const wait = this.bucket.take(msg.payload.length);
    if (wait > 0) {
      if (!this.timer) this.timer = setTimeout(() => ((this.timer = null), this.pumpSafely()), wait);
      return;
    }
    this.outboxInflight = true;
    this.counters.noticesSent++;
    client.publish(`${this.opts.topicPrefix}/${this.opts.deviceId}/${msg.kind}`, msg.payload, { qos: 1 }, (err) => {
      if (this.client !== client) return;
      this.outboxInflight = false;
      if (err) {
        this.lastError = err.message;
        this.opts.log.warn({ err, kind: msg.kind }, 'broker refused a notice');
        return;
      }
      try {
        this.spool.outbox.delete(msg.id);
        this.counters.noticesAcked++;
      } catch (e) {
        this.lastError = (e as Error).message;
      }
      this.pumpSafely();
    });
  }

  private send(client: MqttClient, bytes: Buffer, first: number, last: number, gapIds: number[]): void {
    this.inflight++;
    this.counters.maxInflightSeen = Math.max(this.counters.maxInflightSeen, this.inflight);
    this.counters.packetsSent++;
    this.counters.bytesSent += bytes.length;
    if (first >= this.liveFrom) this.liveCursor = last;
    else this.cursor = last;
    gapIds.forEach((id) => this.gapsInFlight.add(id));
    client.publish(this.topic, bytes, { qos: 1 }, (err) => {
      if (this.client !== client) return; // the connection is gone: the records wait in the spool
      this.inflight--;
      gapIds.forEach((id) => this.gapsInFlight.delete(id));
      if (err) {
        // Refused (MQTT 5 reason code): keep the records and send them again later.
        this.counters.packetsRefused++;
        this.lastError = err.message;
        if (first >= this.liveFrom) this.liveCursor = Math.min(this.liveCursor, first - 1);
        else this.cursor = Math.min(this.cursor, first - 1);
        this.opts.log.warn({ err, firstSeq: first, lastSeq: last }, 'broker refused a packet');
        return;
      }
      this.counters.packetsAcked++;
      try {
        this.counters.recordsAcked += this.spool.ack(first, last);
        if (gapIds.length) this.spool.markGapsReported(gapIds);
      } catch (e) {
        // Not deleted: the records go again later, a whole duplicate packet the cloud drops.
        this.lastError = (e as Error).message;
        this.opts.log.error(
          { err: this.lastError, firstSeq: first, lastSeq: last },
          'acknowledged records could not be deleted from the spool',
        );
      }
      this.pumpSafely();
    });
  }

  /** Publish the offline status and disconnect, waiting up to `deadlineMs` for packets in flight. */
  async stop(deadlineMs = 3000): Promise<void> {
    const wasConnected = this.currentState === 'connected';
    this.currentState = 'stopped';
    if (this.timer) clearTimeout(this.timer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    const client = this.client;
    if (!client) return;
    await new Promise<void>((resolve) => {
      const done = setTimeout(() => {
        client.end(true);
        resolve();
      }, deadlineMs);
      const finish = () => client.end(false, () => (clearTimeout(done), resolve()));
      if (wasConnected)
        client.publish(
          this.statusTopic,
          JSON.stringify({ state: 'offline', deviceId: this.opts.deviceId }),
          { qos: 1, retain: true },
          finish,
        );
      else finish();
    });
    this.client = null;
  }
}
