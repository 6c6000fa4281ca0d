/**
 * Composition root of the running agent: wires serial link -> protocol driver
 * -> metrics engine -> record sinks. Stages hand each other plain data; none
 * reaches into another's internals.
 */
import type { AgentConfig } from '../config/schema.js';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { encodeChunk, encodeHeader } from '../capture/format.js';
import { brokerLogin } from '../upload/login.js';
import { CommandProcessor, commandsStateFile, type RemoteSetting } from '../commands/commands.js';
import type { TrustedKey } from '../ota/manifest.js';
import { join } from 'node:path';
import { ApiError, ApiHub, type ApiBackend } from '../api/hub.js';
import { HttpApiServer } from '../api/http-server.js';
import { UnixApiServer } from '../api/unix-server.js';
import type { Logger } from '../log/logger.js';
import { RecentLog, type RecentEntry } from '../log/recent.js';
import { RecordRing } from '../metrics/record.js';
import { loadMemberKey, MemberPseudonymiser } from '../rides/pseudonym.js';
import { RideTracker } from '../rides/ride-tracker.js';
import type { RideSummary } from '../spool/rides.js';
import { encodePurgeNotice, encodeRideSummary } from '../upload/notices.js';
import { SerialLink, type LinkState } from '../link/serial-link.js';
import { loadCalibration, type Calibration } from '../metrics/calibration.js';
import { MetricsEngine } from '../metrics/engine.js';
import type { LiveRecord } from '../metrics/record.js';
import { createSpeedModel } from '../metrics/speed-model.js';
import type { ProtocolDriver, ProtocolHealth } from '../protocol/driver.js';
import type { FwpDriver } from '../protocol/fwp/driver.js';
import { FwpProtocol } from '../protocol/fwp/protocol.js';
import { createProtocol } from '../protocol/select.js';
import type { PipelineSnapshot } from '../service/pipeline-watch.js';
import { Spool, type SpoolStats } from '../spool/spool.js';
import { Uploader } from '../upload/uploader.js';
import { AGENT_VERSION } from '../version.js';

export type RecordSink = (record: LiveRecord) => void;

export interface AgentHealth {
  deviceId: string;
  agentVersion: string;
  /** Why the agent is not healthy; empty when it is. */
  problems: string[];
  link: ReturnType<SerialLink['snapshot']> & { path: string };
  protocol: ProtocolHealth;
  /** fwp: hello and status; peloton: the calibration table in use. */
  board: { hello: FwpDriver['hello']; status: FwpDriver['status']; calibration?: { source: 'default' | 'bike'; error: string | null; table: number[] } };
  engine: MetricsEngine['counters'];
  spool: (SpoolStats & { state: 'open' }) | { state: 'unavailable'; error: string };
  upload: ReturnType<Uploader['stats']> | { state: 'disabled' };
  ride: RideSummary | null;
  api: ReturnType<ApiHub['stats']> & { socket: string | null; httpPort: number | null };
  lastError: RecentEntry | null;
  healthy: boolean;
}

/** Where the API socket goes when the config does not say. */
export function resolveSocketPath(config: AgentConfig): string {
  if (config.api.socketPath) return config.api.socketPath;
  if (process.env.RUNTIME_DIRECTORY) return join(process.env.RUNTIME_DIRECTORY.split(':')[0], 'api.sock');
  if (existsSync('/run/bike-telemetry')) return '/run/bike-telemetry/api.sock';
  return join(config.dataDir, 'api.sock');
}

/** Raw serial bytes as they cross the link: dir 0 from the board, 1 to it. */
export type RawTap = (bytes: Buffer, dir: number) => void;

export class Agent implements ApiBackend {
  readonly calibration: Calibration;
  readonly rides: RideTracker;
  readonly hub: ApiHub;
  readonly recordHistory = new RecordRing(1200);
  readonly recent: RecentLog;
  readonly agentVersion = AGENT_VERSION;
  private pseudonymiser: MemberPseudonymiser | null = null;
  private unixApi: UnixApiServer | null = null;
  private httpApi: HttpApiServer | null = null;
  private socketPath: string | null = null;
  private healthTimer: NodeJS.Timeout | null = null;
  private healthTicks = 0;
  private captureStop: (() => void) | null = null;
  readonly engine: MetricsEngine;
  readonly protocol: ProtocolDriver;
  readonly link: SerialLink;
  private readonly sinks: RecordSink[] = [];
  private statsTimer: NodeJS.Timeout | null = null;
  private spool: Spool | null = null;
  private uploader: Uploader | null = null;
  private spoolError = 'not opened';
  private lastFrameCount = 0;

  constructor(
    readonly config: AgentConfig,
    private readonly log: Logger,
    recent?: RecentLog,
  ) {
    this.recent = recent ?? new RecentLog();
    this.calibration = loadCalibration(config.metrics.calibration);
    const sinks = this.sinks;
    this.engine = new MetricsEngine({
      calibration: this.calibration,
      speedModel: createSpeedModel(this.calibration.spec.speedModel),
      cadenceTimeoutUs: config.metrics.cadenceTimeoutMs * 1000,
      staleAfterUs: config.metrics.staleAfterMs * 1000,
      expireAfterUs: config.metrics.expireAfterMs * 1000,
      onRecord(record) {
        for (let i = 0; i < sinks.length; i++) sinks[i](record);
      },
    });
    const send = (b: Uint8Array): boolean => this.link.write(b as Buffer);
    this.protocol = createProtocol(config, this.engine, this.calibration, send, this.log);
    const framing = this.protocol.framing;
    this.link = new SerialLink({
      path: config.serial.path,
      baudRate: config.serial.baudRate,
      framing,
      reopenBaseMs: config.serial.reopenBaseMs,
      reopenCapMs: config.serial.reopenCapMs,
      silenceTimeoutMs: config.serial.silenceTimeoutMs,
      readCoalesceMs: config.serial.readCoalesceMs,
    });
    this.hub = new ApiHub(this, { clientQueueBytes: config.api.clientQueueBytes, log: this.log });
    this.recent.onEntry((e) => this.hub.logEvent(e));
    this.rides = new RideTracker({
      idleEndMs: config.rides.idleEndS * 1000,
      autoStart: config.rides.autoStart,
      store: null,
      resetTotals: () => this.engine.resetTotals(),
      onStarted: (s) => this.hub.rideEvent('started', s),
      onEnded: (s) => this.rideEnded(s),
      log: this.log,
    });
  }

  addRecordSink(sink: RecordSink): void {
    this.sinks.push(sink);
  }

  /**
   * Open the spool, then start the pipeline. A spool that cannot be used
   * (written by a newer agent) leaves the agent running on live figures only,
   * and says so in the log and in health().
   */
  start(): void {
    const sc = this.config.spool;
    try {
      const spool = Spool.open({
        dir: this.config.dataDir,
        deviceId: this.config.device.id,
        maxBytes: sc.maxBytes,
        synchronous: sc.synchronous,
        memoryRecords: sc.memoryRecords,
        log: this.log,
      });
      this.spool = spool;
      spool.startAutoFlush(sc.flushIntervalMs);
      this.rides.setStore(spool.rides);
      for (const r of spool.rides.closeDangling()) {
        this.log.warn({ ride: r.uuid }, 'ride left open by a crash or power cut: closed');
        if (r.summary) this.rideEnded(r.summary);
      }
      const st = spool.stats();
      this.log.info({ spool: { file: st.file, records: st.records, bytes: st.bytes, nextSeq: st.nextSeq, synchronous: st.synchronous } }, 'spool open');
      const m = this.config.mqtt;
      if (m.enabled) {
        this.uploader = new Uploader(spool, {
          url: m.url,
          deviceId: this.config.device.id,
          topicPrefix: m.topicPrefix,
          agentVersion: AGENT_VERSION,
          sessionExpirySec: m.sessionExpirySec,
          keepaliveSec: m.keepaliveSec,
          maxInflight: m.maxInflight,
          maxRecordsPerPacket: m.maxRecordsPerPacket,
          maxPacketBytes: m.maxPacketBytes,
          rateBytesPerS: m.rateBytesPerS,
          drainBytesPerS: m.drainBytesPerS,
          ...this.brokerLogin(),
          backoffBaseMs: m.backoffBaseMs,
          backoffCapMs: m.backoffCapMs,
          deflate: m.deflate,
          pollMs: m.pollMs,
          tls: m.tls,
          log: this.log,
        });
        this.uploader.start();
        this.startCommands(this.uploader);
      }
    } catch (err) {
      this.spoolError = (err as Error).message;
      this.log.error({ err: this.spoolError }, 'spool unavailable: serving live figures only, nothing is stored');
    }
    try {
      this.pseudonymiser = new MemberPseudonymiser(loadMemberKey(this.config.privacy.memberKeyFile, this.config.dataDir));
    } catch (err) {
      // Rides with a member are refused until this is fixed; anonymous rides and everything else go on.
      this.log.error({ err: (err as Error).message }, 'member key unavailable: rides with a member id are refused');
    }
    // Order matters: the ride tracker labels the record, the spool stores it, then everyone else sees it.
    const rides = this.rides;
    const history = this.recordHistory;
    const hub = this.hub;
    this.sinks.unshift(
      (r) => {
        rides.onRecord(r);
        const spool = this.spool;
        rides.noteSeq(spool ? spool.append(r, rides.rowId) : 0);
      },
      (r) => history.push(r),
      (r) => hub.onRecord(r),
    );
    this.healthTimer = setInterval(() => {
      this.hub.tickHealth();
      if (++this.healthTicks % 10 === 0) this.rides.persist();
    }, 1000);
    this.healthTimer.unref();
    this.link.on('state', (state: LinkState, detail) => {
      const lvl = state === 'waiting' ? 'warn' : 'info';
      this.log[lvl]({ link: state, path: this.link.path, ...detail }, `link ${state}`);
      if (state !== 'open') this.protocol.linkLost(`link ${state}`);
    });
    this.link.on('open', () => this.protocol.linkOpened());
    this.link.start();
    const every = this.config.log.statsIntervalS;
    if (every > 0) {
      this.statsTimer = setInterval(() => this.logStats(), every * 1000);
      this.statsTimer.unref();
    }
  }

  /** The fwp driver (tests and tools that speak fwp); throws for another protocol. */
  get driver(): FwpDriver {
    if (!(this.protocol instanceof FwpProtocol)) throw new Error(`serial.protocol is ${this.protocol.name}, not fwp`);
    return this.protocol.driver;
  }

  health(): AgentHealth {
    const c = this.protocol.health();
    const link = { ...this.link.snapshot(), path: this.link.path };
    const spoolStats = this.spool ? this.spool.stats() : null;
    const problems: string[] = [];
    if (link.state !== 'open') problems.push(`serial link ${link.state}${link.lastError ? `: ${link.lastError}` : ''}`);
    else if (c.frames === 0) problems.push('serial link open but no frames from the board');
    if (!spoolStats) problems.push(`spool unavailable: ${this.spoolError}`);
    else if (spoolStats.writeFailing) problems.push(`spool cannot write: ${spoolStats.lastWriteError ?? 'unknown error'}`);
    return {
      deviceId: this.config.device.id,
      agentVersion: AGENT_VERSION,
      problems,
      link,
      protocol: c,
      board: this.protocol.board() as AgentHealth['board'],
      engine: this.engine.counters,
      spool: spoolStats ? { state: 'open', ...spoolStats } : { state: 'unavailable', error: this.spoolError },
      upload: this.uploader ? this.uploader.stats() : { state: 'disabled' },
      ride: this.rides.current(),
      api: { ...this.hub.stats(), socket: this.unixApi ? this.socketPath : null, httpPort: this.httpApi ? this.httpApi.port : null },
      lastError: this.recent.last(),
      healthy: problems.length === 0,
    };
  }

  /**
   * Serve the local API: the Unix socket always, the loopback HTTP port when
   * configured. A failure is logged and the agent goes on without it.
   */
  async startApi(): Promise<void> {
    const a = this.config.api;
    const path = resolveSocketPath(this.config);
    try {
      const server = new UnixApiServer(this.hub, { path, maxLineBytes: a.maxLineBytes, maxClients: a.maxClients });
      await server.start();
      this.unixApi = server;
      this.socketPath = path;
      this.log.info({ socket: path }, 'api listening');
    } catch (err) {
      this.log.error({ err: (err as Error).message, socket: path }, 'api socket unavailable');
    }
    if (a.httpPort > 0) {
      try {
        const http = new HttpApiServer(this.hub, { host: a.httpHost, port: a.httpPort, maxBodyBytes: a.maxLineBytes });
        const port = await http.start();
        this.httpApi = http;
        this.log.info({ url: `http://${a.httpHost === '::1' ? '[::1]' : a.httpHost}:${port}/` }, 'diagnostics page and browser api listening');
      } catch (err) {
        this.log.error({ err: (err as Error).message, port: a.httpPort }, 'api http port unavailable');
      }
    }
  }

  get apiSocketPath(): string | null {
    return this.unixApi ? this.socketPath : null;
  }

  get httpPort(): number | null {
    return this.httpApi ? this.httpApi.port : null;
  }

  get deviceId(): string {
    return this.config.device.id;
  }

  private pseudonym(member: string): string {
    if (MemberPseudonymiser.isPseudonym(member)) return member;
    if (!this.pseudonymiser) throw new ApiError('unavailable', 'member key unavailable: see the agent log');
    return this.pseudonymiser.pseudonym(member);
  }

  startRide(member: string | null, classId: string | null): { started: RideSummary; ended: RideSummary | null } {
    return this.rides.start(member === null ? null : this.pseudonym(member), classId);
  }

  endRide(): RideSummary | null {
    return this.rides.end('api');
  }

  currentRide(): RideSummary | null {
    return this.rides.current();
  }

  listRides(q: { limit: number; beforeMs?: number; member?: string }): RideSummary[] {
    const member = q.member === undefined ? undefined : this.pseudonym(q.member);
    if (!this.spool) {
      return this.rides
        .recentInMemory()
        .filter((r) => (member === undefined || r.member === member) && (q.beforeMs === undefined || Date.parse(r.startedAt) < q.beforeMs))
        .slice(0, q.limit);
    }
    return this.spool.rides
      .list({ limit: q.limit, beforeMs: q.beforeMs, member })
      .map((r) => r.summary)
      .filter((s): s is RideSummary => s !== null);
  }

  getRide(ride: string): RideSummary | null {
    const current = this.rides.current();
    if (current?.ride === ride) return current;
    if (!this.spool) return this.rides.recentInMemory().find((r) => r.ride === ride) ?? null;
    return this.spool.rides.get(ride)?.summary ?? null;
  }

  /** Delete every ride and record of one member, here and (by a notice) in the cloud. */
  purgeMember(memberOrPseudonym: string): { member: string; rides: number; records: number } {
    const member = this.pseudonym(memberOrPseudonym);
    if (this.rides.currentMember === member) this.rides.end('purged');
    if (!this.spool) {
      const n = this.rides.purgeInMemory(member);
      this.log.info({ member, rides: n }, 'member purged (memory only: the spool is unavailable)');
      return { member, rides: n, records: 0 };
    }
    const result = this.spool.purgeMember(member);
    this.spool.outbox.add('purge', encodePurgeNotice(this.config.device.id, member, result, Date.now()));
    this.log.info({ member, rides: result.rides.length, records: result.records }, 'member purged');
    return { member, rides: result.rides.length, records: result.records };
  }

  private rideEnded(s: RideSummary): void {
    this.hub.rideEvent('ended', s);
    if (s.endReason === 'purged') return;
    try {
      this.spool?.outbox.add('ride', encodeRideSummary(this.config.device.id, s));
    } catch (err) {
      this.log.warn({ err: (err as Error).message, ride: s.ride }, 'ride summary not queued for the cloud');
    }
  }

  history(seconds: number): Record<string, Array<number | null>> {
    const h = this.recordHistory;
    const n = Math.min(h.size, seconds * 10);
    const out: Record<string, Array<number | null>> = { tUs: [], powerW: [], cadenceRpm: [], hrBpm: [], speedKmh: [], resistancePct: [] };
    const val = (v: number, d: number): number | null => (Number.isFinite(v) ? Number(v.toFixed(d)) : null);
    for (let back = n - 1; back >= 0; back--) {
      const i = h.indexBack(back);
      out.tUs.push(h.tUs[i]);
      out.powerW.push(val(h.powerW[i], 1));
      out.cadenceRpm.push(val(h.cadenceRpm[i], 1));
      out.hrBpm.push(val(h.hrBpm[i], 0));
      out.speedKmh.push(val(h.speedKmh[i], 2));
      out.resistancePct.push(val(h.resistancePct[i], 1));
    }
    return out;
  }

  recentLog(): RecentEntry[] {
    return this.recent.list();
  }

  startCapture(seconds: number, onChunk: (tMs: number, dir: number, bytes: Buffer) => void, onEnd: (reason: string) => void): () => void {
    if (this.captureStop) throw new ApiError('busy', 'a capture is already running');
    const t0 = performance.now();
    let done = false;
    const stop = (reason: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.link.setTap(null);
      this.captureStop = null;
      this.log.info({ reason }, 'capture ended');
      onEnd(reason);
    };
    const timer = setTimeout(() => stop('done'), seconds * 1000);
    this.link.setTap((bytes, dir) => onChunk(Math.round(performance.now() - t0), dir, Buffer.from(bytes)));
    this.captureStop = () => stop('stopped');
    this.log.info({ seconds }, 'capture started');
    return this.captureStop;
  }

  /** Username and password for the broker; a password file that cannot be read is logged and left out. */
  private brokerLogin(): { username?: string; password?: string } {
    try {
      return brokerLogin(this.config);
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'broker password unreadable: connecting without it');
      return { username: this.config.mqtt.username ?? this.config.device.id };
    }
  }

  /** Signed commands from the cloud over the uploader's session (none when no fleet key is configured). */
  private startCommands(uploader: Uploader): void {
    const c = this.config.commands;
    if (c.trustedKeys.length === 0) return;
    let keys: TrustedKey[];
    try {
      keys = c.trustedKeys.map((k) => ({ id: k.id, publicKeyPem: readFileSync(k.publicKeyFile, 'utf8') }));
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'command keys unreadable: commands are not taken');
      return;
    }
    const prefix = this.config.mqtt.topicPrefix;
    const id = this.config.device.id;
    const processor = new CommandProcessor({
      deviceId: id,
      groups: c.groups,
      trustedKeys: keys,
      stateFile: commandsStateFile(this.config.dataDir),
      target: this,
      publishResult: (r) => uploader.publish(`${prefix}/${id}/cmd/result`, JSON.stringify(r)),
      log: this.log,
    });
    uploader.subscribe(CommandProcessor.topics(prefix, id, c.groups), (_topic, payload) => void processor.handle(payload));
  }

  setRemote(key: RemoteSetting, value: unknown): void {
    if (key === 'mqtt.rateBytesPerS') this.uploader?.setConfiguredLimit('uploadBytesPerS', value as number);
    else if (key === 'mqtt.drainBytesPerS') this.uploader?.setConfiguredLimit('drainBytesPerS', value as number);
    else if (key === 'log.level') this.log.level = value as string;
  }

  uploadNow(): void {
    this.uploader?.uploadNow();
  }

  /** Raw serial bytes for `seconds` into dataDir/captures/ (a capture file `replay` reads). */
  captureToFile(seconds: number): Promise<{ file: string; bytes: number }> {
    const dir = join(this.config.dataDir, 'captures');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}.cap`);
    const parts: Buffer[] = [encodeHeader({ protocol: this.config.serial.protocol, baudRate: this.config.serial.baudRate, startedAt: new Date().toISOString(), deviceId: this.config.device.id, source: 'agent' })];
    let bytes = 0;
    return new Promise((resolve) => {
      this.startCapture(
        seconds,
        (tMs, dir2, b) => {
          bytes += b.length;
          parts.push(encodeChunk(tMs, dir2, b));
        },
        () => {
          writeFileSync(file, Buffer.concat(parts));
          resolve({ file, bytes });
        },
      );
    });
  }

  /** What the watchdog checks (service/pipeline-watch.ts): cheap counters, no queries. */
  pipelineSnapshot(): PipelineSnapshot {
    return {
      nowMs: Date.now(),
      linkOpen: this.link.state === 'open',
      frames: this.protocol.health().frames,
      records: this.engine.counters.records,
      spoolLastFlushMs: this.spool ? this.spool.lastFlushMs : null,
    };
  }

  /** One line for systemd's STATUS= (shown by `systemctl status`). */
  statusLine(): string {
    const h = this.health();
    const backlog = h.spool.state === 'open' ? `backlog ${h.spool.records}` : 'spool unavailable';
    return `${h.healthy ? 'recording' : `unhealthy: ${h.problems[0]}`}; link ${h.link.state}; upload ${h.upload.state}; ${backlog}`;
  }

  private logStats(): void {
    const h = this.health();
    const framesPerS = (h.protocol.frames - this.lastFrameCount) / this.config.log.statsIntervalS;
    this.lastFrameCount = h.protocol.frames;
    this.log.info({ stats: { link: h.link.state, counters: h.link.counters, protocol: h.protocol, framesPerS } }, 'stats');
  }

  /**
   * Stop reading, let the uploader finish what is in flight (briefly: the spool
   * keeps whatever is not acknowledged), then commit every queued record and
   * close the spool.
   */
  async stop(): Promise<void> {
    if (this.statsTimer) clearInterval(this.statsTimer);
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.captureStop?.();
    this.hub.closeAll('agent stopping');
    await this.unixApi?.stop();
    await this.httpApi?.stop();
    this.unixApi = null;
    this.httpApi = null;
    this.rides.end('shutdown');
    this.protocol.linkLost('agent stopping');
    await this.link.stop();
    await this.uploader?.stop(2000);
    this.uploader = null;
    this.spool?.close();
    this.spool = null;
    this.spoolError = 'closed';
  }
}
