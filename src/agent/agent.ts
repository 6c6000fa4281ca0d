/**
 * Composition root of the running agent: wires serial link -> protocol driver
 * -> metrics engine -> record sinks. Stages hand each other plain data; none
 * reaches into another's internals.
 *
 * Over 400 lines: besides the wiring it still holds the API backend, capture,
 * remote settings, commands and the spool's retry and held records. Issue 11
 * moves each into its own module behind one pipeline factory; until then this
 * file is the one place they meet.
 */
import { resolveSocketPath } from '../api/socket-path.js';
import type { AgentConfig } from '../config/schema.js';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { encodeChunk, encodeHeader } from '../capture/format.js';
import { brokerLogin } from '../upload/login.js';
import { CommandProcessor, commandsStateFile, type RemoteSetting } from '../commands/commands.js';
import { readTrustedKeyFiles, type TrustedKey } from '../ota/manifest.js';
import { join } from 'node:path';
import { ApiError, ApiHub, type ApiBackend } from '../api/hub.js';
import type { HttpApiServer } from '../api/http-server.js';
import { UnixApiServer } from '../api/unix-server.js';
import type { Logger } from '../log/logger.js';
import { RecentLog, type RecentEntry } from '../log/recent.js';
import { RecordRing } from '../metrics/record.js';
import { loadMemberKey, MemberPseudonymiser } from '../rides/pseudonym.js';
import { RideTracker } from '../rides/ride-tracker.js';
import type { RideSummary } from '../spool/rides.js';
import { encodePurgeNotice, encodeRideSummary } from '../upload/notices.js';
import { SerialLink, type LinkState } from '../link/serial-link.js';
import { LinkStateLog } from '../link/link-log.js';
import { loadCalibration, type Calibration } from '../metrics/calibration.js';
import { MetricsEngine } from '../metrics/engine.js';
import type { LiveRecord } from '../metrics/record.js';
import { createSpeedModel } from '../metrics/speed-model.js';
import type { ProtocolDriver, ProtocolHealth } from '../protocol/driver.js';
import type { FwpDriver } from '../protocol/fwp/driver.js';
import { FwpProtocol } from '../protocol/fwp/protocol.js';
import { createProtocol } from '../protocol/select.js';
import type { PipelineSnapshot } from '../service/pipeline-watch.js';
import { RecordBatch } from '../spool/batch.js';
import { Spool, SpoolTooNewError, type SpoolStats } from '../spool/spool.js';
import { Uploader } from '../upload/uploader.js';
import { OfferForwarder } from '../ota/offer-forwarder.js';
import { errorCode } from '../util/files.js';
import { Heartbeat } from '../util/heartbeat.js';
import { AGENT_VERSION } from '../version.js';
import { BoardService } from '../firmware/agent-wiring.js';
import type { BoardUpdateStatus } from '../firmware/board-updater.js';

export type RecordSink = (record: LiveRecord) => void;

const SPOOL_RETRY_BASE_MS = 5_000;
const SPOOL_RETRY_CAP_MS = 60_000;
const UPLOAD_RETRY_MS = 60_000;
/** A capture to file holds its bytes in memory until it ends: 64 MiB at most (115200 baud for 600 s is about 7 MB). */
const CAPTURE_MAX_BYTES = 64 << 20;

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
  /** unavailable: retried with backoff while `heldRecords` wait in memory (none when the spool is too new). */
  spool: (SpoolStats & { state: 'open' }) | { state: 'unavailable'; error: string; heldRecords: number; droppedWhileUnavailable: number };
  upload: ReturnType<Uploader['stats']> | { state: 'disabled' } | { state: 'unavailable'; error: string };
  ride: RideSummary | null;
  /** The flywheel board's firmware update (fwp), null when none was asked for. */
  boardUpdate: BoardUpdateStatus | null;
  api: ReturnType<ApiHub['stats']> & { socket: string | null; httpPort: number | null };
  lastError: RecentEntry | null;
  healthy: boolean;
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
  /** The one timer of the agent's periodic work (see util/heartbeat.ts). */
  private readonly heartbeat: Heartbeat;
  private healthTicks = 0;
  private captureStop: (() => void) | null = null;
  readonly engine: MetricsEngine;
  readonly protocol: ProtocolDriver;
  readonly link: SerialLink;
  private readonly sinks: RecordSink[] = [];
  private spool: Spool | null = null;
  private uploader: Uploader | null = null;
  private spoolError = 'not opened';
  /** Records made while the spool could not be opened (null while it is open). */
  private held: RecordBatch | null = null;
  private lastHeldTUs = 0;
  private spoolRetryMs = 0;
  private spoolRetryTimer: NodeJS.Timeout | null = null;
  private uploadError: string | null = null;
  private uploadRetryTimer: NodeJS.Timeout | null = null;
  private danglingPending = false;
  private lastSpoolCondition = 'ok';
  private stopped = false;
  private lastFrameCount = 0;
  /** Firmware updates of the flywheel board (fwp only). */
  private board: BoardService | null = null;

  constructor(
    readonly config: AgentConfig,
    private readonly log: Logger,
    recent?: RecentLog,
  ) {
    this.recent = recent ?? new RecentLog();
    this.calibration = loadCalibration(config.metrics.calibration);
    // The beat is the commit interval (1 s unless configured shorter): the commit sets the pace.
    this.heartbeat = new Heartbeat(config.spool.flushIntervalMs, (task, err) => this.log.error({ err, task }, 'periodic task failed'));
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
    this.protocol = createProtocol(config, this.engine, this.calibration, send, this.log, () => this.link.readNow());
    const framing = this.protocol.framing;
    this.link = new SerialLink({
      path: config.serial.path,
      baudRate: config.serial.baudRate,
      framing,
      reopenBaseMs: config.serial.reopenBaseMs,
      reopenCapMs: config.serial.reopenCapMs,
      silenceTimeoutMs: config.serial.silenceTimeoutMs,
      readCoalesceMs: config.serial.readCoalesceMs,
      heartbeat: this.heartbeat,
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
   * Open the spool, then start the pipeline. The pipeline never waits for the
   * spool: a spool that cannot be opened now (a full disk, a lock, no
   * permission) is tried again with backoff while the newest records wait in
   * memory; one written by a newer agent leaves the agent on live figures only.
   * Each failure is said once in the log and shown in health().
   */
  start(): void {
    this.openSpool();
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
        if (spool) rides.noteSeq(spool.append(r, rides.rowId));
        else {
          this.holdRecord(r, rides.rowId);
          rides.noteSeq(0);
        }
      },
      (r) => history.push(r),
      (r) => hub.onRecord(r),
    );
    // Commit first, then the uploader's poll, so what was just committed goes out on the same wake-up.
    this.heartbeat.every('spool commit', this.config.spool.flushIntervalMs, () => this.spool?.flush());
    if (this.config.mqtt.pollMs >= this.heartbeat.periodMs) this.heartbeat.every('upload poll', this.config.mqtt.pollMs, () => this.uploader?.poll());
    this.heartbeat.every('health', 1000, () => {
      this.hub.tickHealth();
      this.watchSpoolCondition();
      if (this.held && this.held.length > 0) this.held.wallOffset[0] = Date.now() - this.lastHeldTUs / 1000;
      if (++this.healthTicks % 10 === 0) {
        this.rides.persist();
        if (this.danglingPending) this.closeDanglingRides();
      }
    });
    const linkLog = new LinkStateLog(this.log, this.link.path);
    this.link.on('state', (state: LinkState, detail) => {
      linkLog.onState(state, detail);
      if (state !== 'open') this.protocol.linkLost(`link ${state}`);
    });
    this.link.on('open', () => this.protocol.linkOpened());
    if (this.protocol instanceof FwpProtocol) {
      const board = new BoardService({
        config: this.config,
        protocol: this.protocol,
        linkOpen: () => this.link.snapshot().state === 'open',
        lowLatency: (on) => this.link.setLowLatency(on),
        rideActive: () => this.rides.current() !== null,
        log: this.log,
        onChange: () => this.boardUpdateChanged(),
      });
      this.board = board;
      this.sinks.push(board.onRecord);
      board.start();
    }
    this.link.start();
    const every = this.config.log.statsIntervalS;
    if (every > 0) this.heartbeat.every('stats', every * 1000, () => this.logStats());
    this.heartbeat.start();
  }

  private openSpool(): void {
    this.spoolRetryTimer = null;
    if (this.stopped) return;
    const sc = this.config.spool;
    let spool: Spool;
    try {
      spool = Spool.open({
        dir: this.config.dataDir,
        deviceId: this.config.device.id,
        maxBytes: sc.maxBytes,
        synchronous: sc.synchronous,
        memoryRecords: sc.memoryRecords,
        log: this.log,
        // What is durable, at debug level only (log.level "debug"): a line a second.
        ...(this.log.isLevelEnabled('debug') ? { onCommit: (records: number, lastSeq: number) => this.log.debug({ records, lastSeq }, 'spool committed') } : {}),
      });
    } catch (err) {
      this.spoolError = (err as Error).message;
      if (err instanceof SpoolTooNewError) {
        this.log.error({ err }, 'spool written by a newer agent: serving live figures only, nothing is stored');
        return;
      }
      this.held ??= new RecordBatch(sc.memoryRecords);
      if (this.spoolRetryMs === 0) this.log.error({ err }, 'spool unavailable: holding the newest records in memory and trying again');
      this.spoolRetryMs = Math.min(SPOOL_RETRY_CAP_MS, Math.max(SPOOL_RETRY_BASE_MS, this.spoolRetryMs * 2));
      this.spoolRetryTimer = setTimeout(() => this.openSpool(), this.spoolRetryMs);
      this.spoolRetryTimer.unref();
      return;
    }
    this.spool = spool;
    this.spoolError = '';
    this.engine.continueAfter(spool.priorTUs);
    if (this.held) {
      const dropped = this.held.dropped;
      const adopted = spool.adopt(this.held);
      this.held = null;
      this.log.info({ adopted, droppedWhileUnavailable: dropped }, 'spool available: records held in memory are numbered and queued');
    }
    this.spoolRetryMs = 0;
    // Committed once a beat by the heartbeat (start()).
    this.rides.setStore(spool.rides);
    this.closeDanglingRides();
    const st = spool.stats();
    this.log.info({ spool: { file: st.file, records: st.records, bytes: st.bytes, nextSeq: st.nextSeq, synchronous: st.synchronous } }, 'spool open');
    this.startUpload();
  }

  /** Records made while the spool could not be opened: the newest `spool.memoryRecords`, numbered when it opens. */
  private holdRecord(r: LiveRecord, ride: number): void {
    const held = this.held;
    if (!held) return; // a spool from a newer agent: live figures only
    // The clock is read once a second (health timer), not per record: Date.now() allocates.
    if (held.length === 0) held.wallOffset[0] = Date.now() - r.tUs / 1000;
    this.lastHeldTUs = r.tUs;
    held.push(0, ride, r);
  }

  /** Rides a crash left open are closed at start; on a full disk that waits until it can be written. */
  private closeDanglingRides(): void {
    const spool = this.spool;
    if (!spool) return;
    try {
      for (const r of spool.rides.closeDangling()) {
        this.log.warn({ ride: r.uuid }, 'ride left open by a crash or power cut: closed');
        if (r.summary) this.rideEnded(r.summary);
      }
      if (this.danglingPending) this.log.info('rides left open by a crash: closed now');
      this.danglingPending = false;
    } catch (err) {
      if (!this.danglingPending) this.log.warn({ err }, 'rides left open by a crash cannot be closed now: tried again every 10 s');
      this.danglingPending = true;
    }
  }

  /**
   * The uploader and cloud commands, once the spool is open. Configuration
   * that cannot be used (an unreadable TLS or password file) is named in the
   * log and in health(), and tried again every minute; records stay spooled.
   */
  private startUpload(): void {
    this.uploadRetryTimer = null;
    const spool = this.spool;
    const m = this.config.mqtt;
    if (!spool || !m.enabled || this.uploader || this.stopped) return;
    try {
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
        // Polled by the agent's heartbeat (start()) unless asked to poll faster than it beats.
        pollMs: m.pollMs >= this.heartbeat.periodMs ? 0 : m.pollMs,
        tls: m.tls,
        log: this.log,
      });
    } catch (err) {
      if (this.uploadError === null) this.log.error({ err }, 'upload cannot start: records stay in the spool; tried again every minute');
      this.uploadError = (err as Error).message;
      this.uploadRetryTimer = setTimeout(() => this.startUpload(), UPLOAD_RETRY_MS);
      this.uploadRetryTimer.unref();
      return;
    }
    if (this.uploadError !== null) this.log.info('upload configuration readable again: uploading');
    this.uploadError = null;
    this.uploader.start();
    this.startCommands(this.uploader);
    if (this.config.ota.enabled) this.startOfferForwarding(this.uploader);
  }

  /** Update offers reach the updater through the agent's session (ota/offer-forwarder.ts). */
  private startOfferForwarding(uploader: Uploader): void {
    const statusTopic = `${this.config.mqtt.topicPrefix}/${this.config.device.id}/status/ota`;
    const forwarder = new OfferForwarder(this.config, this.log, (payload) => uploader.publish(statusTopic, payload, true));
    uploader.subscribe(forwarder.topics, (_topic, payload) => forwarder.onMessage(payload));
    this.log.info({ topics: forwarder.topics, inbox: forwarder.inbox.dir }, 'update offers go to the updater through the inbox');
  }

  /** The status topic says when the disk fills and when it recovers (checked once a second, cheaply). */
  private watchSpoolCondition(): void {
    const c = this.spool ? this.spool.condition : 'unavailable';
    if (c === this.lastSpoolCondition) return;
    this.lastSpoolCondition = c;
    this.uploader?.refreshStatus();
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
    else if (spoolStats.writeFailing) problems.push(`spool cannot write${spoolStats.diskFull ? ' (disk full)' : ''}: ${spoolStats.lastWriteError ?? 'unknown error'}`);
    if (this.uploadError !== null) problems.push(`upload cannot start: ${this.uploadError}`);
    return {
      deviceId: this.config.device.id,
      agentVersion: AGENT_VERSION,
      problems,
      link,
      protocol: c,
      board: this.protocol.board() as AgentHealth['board'],
      engine: this.engine.counters,
      spool: spoolStats
        ? { state: 'open', ...spoolStats }
        : { state: 'unavailable', error: this.spoolError, heldRecords: this.held?.length ?? 0, droppedWhileUnavailable: this.held?.dropped ?? 0 },
      upload: this.uploader ? this.uploader.stats() : this.uploadError !== null ? { state: 'unavailable', error: this.uploadError } : { state: 'disabled' },
      ride: this.rides.current(),
      boardUpdate: this.board?.status() ?? null,
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
      const server = new UnixApiServer(this.hub, { path, maxLineBytes: a.maxLineBytes, maxClients: a.maxClients, idleTimeoutMs: a.idleTimeoutS * 1000 });
      await server.start();
      this.unixApi = server;
      this.socketPath = path;
      this.log.info({ socket: path }, 'api listening');
    } catch (err) {
      this.log.error({ err: (err as Error).message, socket: path }, 'api socket unavailable');
    }
    if (a.httpPort > 0) {
      try {
        // Loaded only where the diagnostics page is on (off as installed): its server and page cost memory.
        const { HttpApiServer } = await import('../api/http-server.js');
        const http = new HttpApiServer(this.hub, { host: a.httpHost, port: a.httpPort, maxBodyBytes: a.maxLineBytes, maxStreams: a.maxHttpStreams, log: this.log });
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

  /** A board update's stage or progress (every 10 %) changed: the live stream and `<prefix>/<device>/status/board` hear of it. */
  private boardUpdateChanged(): void {
    const u = this.board?.status();
    if (!u) return;
    const updating = this.board!.updater.boardBusy;
    this.hub.boardEvent({ updating, stage: u.stage, version: u.version, percent: u.percent });
    const topic = `${this.config.mqtt.topicPrefix}/${this.config.device.id}/status/board`;
    const hello = this.protocol instanceof FwpProtocol ? this.protocol.driver.hello : null;
    this.uploader?.publish(topic, JSON.stringify({ deviceId: this.config.device.id, board: hello, update: u, at: new Date().toISOString() }), true);
  }

  private boardService(): BoardService {
    if (!this.board) throw new ApiError('unavailable', `the board's firmware is updated over fwp; serial.protocol is ${this.protocol.name}`);
    return this.board;
  }

  boardInfo(): Promise<unknown> {
    return this.boardService().info();
  }

  boardUpload(offset: number, b64: string): unknown {
    return this.boardService().upload(offset, b64);
  }

  boardUpdate(sha256: string): unknown {
    return this.boardService().update(sha256);
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
    let result;
    try {
      result = this.spool.purgeMember(member);
      this.spool.outbox.add('purge', encodePurgeNotice(this.config.device.id, member, result, Date.now()));
    } catch (err) {
      // Nothing was deleted (one transaction): the caller is told to try again, the log keeps why.
      this.log.error({ err, member }, 'member purge failed');
      throw new ApiError('unavailable', `purge could not be written (${errorCode(err)}): nothing was deleted; try again`);
    }
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
      keys = readTrustedKeyFiles(c.trustedKeys);
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
      maxLifetimeMs: c.maxLifetimeS * 1000,
      target: this,
      publishResult: (r) => uploader.publish(`${prefix}/${id}/cmd/result`, JSON.stringify(r)),
      log: this.log,
    });
    uploader.subscribe(CommandProcessor.topics(prefix, id, c.groups), (_topic, payload) => {
      // handle() settles every command with a result; this catch is for a fault in that path itself.
      processor.handle(payload).catch((err: unknown) => this.log.error({ err }, 'command handling failed'));
    });
  }

  setRemote(key: RemoteSetting, value: unknown): void {
    if (key === 'mqtt.rateBytesPerS') this.uploader?.setConfiguredLimit('uploadBytesPerS', value as number);
    else if (key === 'mqtt.drainBytesPerS') this.uploader?.setConfiguredLimit('drainBytesPerS', value as number);
    else if (key === 'log.level') this.log.level = value as string;
  }

  uploadNow(): void {
    this.uploader?.uploadNow();
  }

  /**
   * Raw serial bytes for `seconds` into dataDir/captures/ (a capture file
   * `replay` reads). Held in memory (bounded) and written at the end; a write
   * that fails (a full disk) rejects with the reason and leaves no partial file.
   */
  captureToFile(seconds: number): Promise<{ file: string; bytes: number }> {
    const dir = join(this.config.dataDir, 'captures');
    const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}.cap`);
    const parts: Buffer[] = [encodeHeader({ protocol: this.config.serial.protocol, baudRate: this.config.serial.baudRate, startedAt: new Date().toISOString(), deviceId: this.config.device.id, source: 'agent' })];
    let bytes = 0;
    let truncated = false;
    return new Promise((resolve, reject) => {
      this.startCapture(
        seconds,
        (tMs, dir2, b) => {
          if (bytes + b.length > CAPTURE_MAX_BYTES) {
            truncated = true;
            return;
          }
          bytes += b.length;
          parts.push(encodeChunk(tMs, dir2, b));
        },
        () => {
          try {
            mkdirSync(dir, { recursive: true });
            writeFileSync(file, Buffer.concat(parts));
          } catch (err) {
            rmSync(file, { force: true });
            this.log.warn({ err, file }, 'capture not written');
            reject(new Error(`capture not written (${errorCode(err)}): ${(err as Error).message}`));
            return;
          }
          if (truncated) this.log.warn({ file, maxBytes: CAPTURE_MAX_BYTES }, 'capture cut at its size limit');
          resolve({ file, bytes });
        },
      );
    });
  }

  /** Commit whatever the spool holds in memory, where the disk allows (the last-resort handler, before exiting). */
  commitHeldRecords(): number {
    return this.spool ? this.spool.flush() : 0;
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
    this.stopped = true;
    if (this.spoolRetryTimer) clearTimeout(this.spoolRetryTimer);
    if (this.uploadRetryTimer) clearTimeout(this.uploadRetryTimer);
    this.heartbeat.stop();
    this.board?.stop();
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
