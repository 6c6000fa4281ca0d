/**
 * The running agent: the board pipeline (pipeline/board.ts) with the spool
 * (agent/spool-keeper.ts), the uploader (agent/upload-keeper.ts), rides and
 * the local API around it, started and stopped in order. The API's methods
 * are agent/api-backend.ts, raw captures agent/capture.ts, what the cloud may
 * ask agent/cloud-control.ts.
 */
import { ApiHub } from '../api/hub.js';
import type { AgentConfig } from '../config/schema.js';
import type { AgentHealth, RideSummary } from '../contracts/health.js';
import type { BoardStatusMessage } from '../contracts/mqtt.js';
import { BoardService } from '../firmware/agent-wiring.js';
import { LinkStateLog } from '../link/link-log.js';
import type { LinkState, SerialLink } from '../link/serial-link.js';
import type { Logger } from '../log/logger.js';
import { RecentLog } from '../log/recent.js';
import type { Calibration } from '../metrics/calibration.js';
import type { MetricsEngine } from '../metrics/engine.js';
import { RecordRing, type LiveRecord } from '../metrics/record.js';
import { createBoardPipeline } from '../pipeline/board.js';
import type { ProtocolDriver } from '../protocol/driver.js';
import { boardFirmwareOf, type BoardFirmwareProtocol } from '../protocol/registry.js';
import { loadMemberKey, MemberPseudonymiser } from '../rides/pseudonym.js';
import { RideTracker } from '../rides/ride-tracker.js';
import type { PipelineSnapshot } from '../service/pipeline-watch.js';
import type { Spool } from '../spool/spool.js';
import { encodeRideSummary } from '../upload/notices.js';
import { Heartbeat } from '../util/heartbeat.js';
import { AGENT_VERSION } from '../version.js';
import { AgentApiBackend } from './api-backend.js';
import { ApiServers } from './api-servers.js';
import { LinkCapture } from './capture.js';
import { SpoolKeeper } from './spool-keeper.js';
import { UploadKeeper } from './upload-keeper.js';

export type RecordSink = (record: LiveRecord) => void;

export class Agent {
  readonly calibration: Calibration;
  readonly rides: RideTracker;
  readonly hub: ApiHub;
  readonly recordHistory = new RecordRing(1200);
  readonly recent: RecentLog;
  readonly agentVersion = AGENT_VERSION;
  readonly engine: MetricsEngine;
  readonly protocol: ProtocolDriver;
  readonly link: SerialLink;
  readonly api: AgentApiBackend;
  private readonly servers: ApiServers;
  private readonly capture: LinkCapture;
  private pseudonymiser: MemberPseudonymiser | null = null;
  /** The one timer of the agent's periodic work (see util/heartbeat.ts). */
  private readonly heartbeat: Heartbeat;
  private healthTicks = 0;
  private readonly sinks: RecordSink[] = [];
  private readonly storage: SpoolKeeper;
  private readonly upload: UploadKeeper;
  private danglingPending = false;
  private lastSpoolCondition = 'ok';
  private lastFrameCount = 0;
  /** Firmware updates of the flywheel board (fwp only). */
  private board: BoardService | null = null;

  constructor(
    readonly config: AgentConfig,
    private readonly log: Logger,
    recent?: RecentLog,
  ) {
    this.recent = recent ?? new RecentLog();
    // The beat is the commit interval (1 s unless configured shorter): the commit sets the pace.
    this.heartbeat = new Heartbeat(config.spool.flushIntervalMs, (task, err) => this.log.error({ err, task }, 'periodic task failed'));
    const sinks = this.sinks;
    const pipeline = createBoardPipeline(
      config,
      log,
      (record) => {
        for (let i = 0; i < sinks.length; i++) sinks[i](record);
      },
      { heartbeat: this.heartbeat },
    );
    this.calibration = pipeline.calibration;
    this.engine = pipeline.engine;
    this.protocol = pipeline.protocol;
    this.link = pipeline.link;
    // Nobody watches until an API client subscribes to the live figures.
    this.link.setUnwatched(true);
    this.capture = new LinkCapture(this.link, log);
    this.storage = new SpoolKeeper({ config, log, engine: this.engine, onOpen: (spool) => this.spoolOpened(spool) });
    this.rides = new RideTracker({
      idleEndMs: config.rides.idleEndS * 1000,
      autoStart: config.rides.autoStart,
      store: null,
      resetTotals: () => this.engine.resetTotals(),
      onStarted: (s) => this.hub.rideEvent('started', s),
      onEnded: (s) => this.rideEnded(s),
      log: this.log,
    });
    this.api = new AgentApiBackend({
      config,
      log,
      rides: this.rides,
      recordHistory: this.recordHistory,
      recent: this.recent,
      capture: this.capture,
      health: () => this.health(),
      spool: () => this.storage.spool,
      pseudonymiser: () => this.pseudonymiser,
      board: () => this.board,
      protocolName: this.protocol.name,
    });
    this.hub = new ApiHub(this.api, {
      clientQueueBytes: config.api.clientQueueBytes,
      log: this.log,
      // While nobody watches the live figures, the board is read once a heartbeat (SerialLink.setUnwatched).
      onLiveWatchers: (watchers) => this.link.setUnwatched(watchers === 0),
    });
    this.servers = new ApiServers(this.hub, config, log);
    this.upload = new UploadKeeper({
      config,
      log,
      periodMs: this.heartbeat.periodMs,
      capture: this.capture,
      purgeMember: (m) => this.api.purgeMember(m),
    });
    this.recent.onEntry((e) => this.hub.logEvent(e));
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
   *
   * `deferUpload`: the uploader does not connect until startUploading()
   * (agent/upload-keeper.ts says why).
   */
  start(opts: { deferUpload?: boolean } = {}): void {
    if (opts.deferUpload) this.upload.hold();
    this.storage.open();
    try {
      this.pseudonymiser = new MemberPseudonymiser(loadMemberKey(this.config.privacy.memberKeyFile, this.config.dataDir));
    } catch (err) {
      // Rides with a member are refused until this is fixed; anonymous rides and everything else go on.
      this.log.error({ err }, 'member key unavailable: rides with a member id are refused');
    }
    // Order matters: the ride tracker labels the record, the spool stores it, then everyone else sees it.
    const rides = this.rides;
    const history = this.recordHistory;
    const hub = this.hub;
    const storage = this.storage;
    this.sinks.unshift(
      (r) => {
        rides.onRecord(r);
        rides.noteSeq(storage.record(r, rides.rowId));
      },
      (r) => history.push(r),
      (r) => hub.onRecord(r),
    );
    // Commit first, then the uploader's poll, so what was just committed goes out on the same wake-up.
    this.heartbeat.every('spool commit', this.config.spool.flushIntervalMs, () => this.storage.commit());
    if (this.config.mqtt.pollMs >= this.heartbeat.periodMs)
      this.heartbeat.every('upload poll', this.config.mqtt.pollMs, () => this.upload.uploader?.poll());
    this.heartbeat.every('health', 1000, () => {
      this.hub.tickHealth();
      this.watchSpoolCondition();
      this.storage.tick();
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
    const firmware = boardFirmwareOf(this.protocol);
    if (firmware) {
      const board = new BoardService({
        config: this.config,
        protocol: firmware,
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

  /** The spool opened: rides are stored in it, rides a crash left open are closed, and the upload starts. */
  private spoolOpened(spool: Spool): void {
    // Committed once a beat by the heartbeat (start()).
    this.rides.setStore(spool.rides);
    this.closeDanglingRides();
    this.upload.open(spool);
  }

  /** Rides a crash left open are closed at start; on a full disk that waits until it can be written. */
  private closeDanglingRides(): void {
    const spool = this.storage.spool;
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

  /** What start(`{ deferUpload: true }`) held back: the uploader connects now, or as soon as the spool opens. */
  startUploading(): void {
    this.upload.release();
  }

  /** The status topic says when the disk fills and when it recovers (checked once a second, cheaply). */
  private watchSpoolCondition(): void {
    const c = this.storage.spool?.condition ?? 'unavailable';
    if (c === this.lastSpoolCondition) return;
    this.lastSpoolCondition = c;
    this.upload.uploader?.refreshStatus();
  }

  /** The board-firmware side of the protocol driver (tests and tools that speak fwp); throws for another protocol. */
  get firmware(): BoardFirmwareProtocol {
    const f = boardFirmwareOf(this.protocol);
    if (!f) throw new Error(`serial.protocol is ${this.protocol.name}, not fwp`);
    return f;
  }

  /** Serve the local API (agent/api-servers.ts). */
  startApi(): Promise<void> {
    return this.servers.start();
  }

  health(): AgentHealth {
    const c = this.protocol.health();
    const link = { ...this.link.snapshot(), path: this.link.path };
    const spool = this.storage.health();
    const problems: string[] = [];
    if (link.state !== 'open') problems.push(`serial link ${link.state}${link.lastError ? `: ${link.lastError}` : ''}`);
    else if (c.frames === 0) problems.push('serial link open but no frames from the board');
    if (spool.state === 'unavailable') problems.push(`spool unavailable: ${spool.error}`);
    else if (spool.writeFailing)
      problems.push(`spool cannot write${spool.diskFull ? ' (disk full)' : ''}: ${spool.lastWriteError ?? 'unknown error'}`);
    if (this.upload.problem !== null) problems.push(`upload cannot start: ${this.upload.problem}`);
    return {
      deviceId: this.config.device.id,
      agentVersion: AGENT_VERSION,
      problems,
      link,
      protocol: c,
      board: this.protocol.board(),
      engine: this.engine.counters,
      spool,
      upload: this.upload.health(),
      ride: this.rides.current(),
      boardUpdate: this.board?.status() ?? null,
      api: { ...this.hub.stats(), socket: this.servers.socketPath, httpPort: this.servers.httpPort },
      lastError: this.recent.last(),
      healthy: problems.length === 0,
    };
  }

  get deviceId(): string {
    return this.config.device.id;
  }

  /** A board update's stage or progress (every 10 %) changed: the live stream and `<prefix>/<device>/status/board` hear of it. */
  private boardUpdateChanged(): void {
    const u = this.board?.status();
    if (!u) return;
    const updating = this.board!.updater.boardBusy;
    this.hub.boardEvent({ updating, stage: u.stage, version: u.version, percent: u.percent });
    const topic = `${this.config.mqtt.topicPrefix}/${this.config.device.id}/status/board`;
    const message: BoardStatusMessage = {
      deviceId: this.config.device.id,
      board: this.protocol.board().hello,
      update: u,
      at: new Date().toISOString(),
    };
    this.upload.uploader?.publish(topic, JSON.stringify(message), true);
  }

  private rideEnded(s: RideSummary): void {
    this.hub.rideEvent('ended', s);
    if (s.endReason === 'purged') return;
    try {
      this.storage.spool?.outbox.add('ride', encodeRideSummary(this.config.device.id, s));
    } catch (err) {
      this.log.warn({ err, ride: s.ride }, 'ride summary not queued for the cloud');
    }
  }

  /** Commit whatever the spool holds in memory, where the disk allows (the last-resort handler, before exiting). */
  commitHeldRecords(): number {
    return this.storage.commit();
  }

  /** What the watchdog checks (service/pipeline-watch.ts): cheap counters, no queries. */
  pipelineSnapshot(): PipelineSnapshot {
    return {
      nowMs: Date.now(),
      linkOpen: this.link.state === 'open',
      frames: this.protocol.health().frames,
      records: this.engine.counters.records,
      spoolLastFlushMs: this.storage.spool?.lastFlushMs ?? null,
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
    this.storage.halt();
    this.upload.halt();
    this.heartbeat.stop();
    this.board?.stop();
    this.capture.stop();
    this.hub.closeAll('agent stopping');
    await this.servers.stop();
    this.rides.end('shutdown');
    this.protocol.linkLost('agent stopping');
    await this.link.stop();
    await this.upload.stop(2000);
    this.storage.close();
  }
}
