/**
 * Composition root of the running agent: wires serial link -> protocol driver
 * -> metrics engine -> record sinks. Stages hand each other plain data; none
 * reaches into another's internals.
 */
import type { AgentConfig } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { SerialLink, type LinkState } from '../link/serial-link.js';
import { loadCalibration, type Calibration } from '../metrics/calibration.js';
import { MetricsEngine } from '../metrics/engine.js';
import type { LiveRecord } from '../metrics/record.js';
import { createSpeedModel } from '../metrics/speed-model.js';
import { LogLevel, MAX_WIRE_FRAME, RequestOp } from '../protocol/fwp/codec.js';
import { FwpDriver } from '../protocol/fwp/driver.js';
import { Spool, type SpoolStats } from '../spool/spool.js';
import { Uploader } from '../upload/uploader.js';
import { AGENT_VERSION } from '../version.js';

export type RecordSink = (record: LiveRecord) => void;

export interface AgentHealth {
  deviceId: string;
  link: ReturnType<SerialLink['snapshot']> & { path: string };
  protocol: {
    frames: number;
    samples: number;
    errors: Record<string, number>;
    lostFrames: number;
    seqGaps: number;
    boardResets: number;
    requestTimeouts: number;
  };
  board: { hello: FwpDriver['hello']; status: FwpDriver['status'] };
  engine: MetricsEngine['counters'];
  spool: (SpoolStats & { state: 'open' }) | { state: 'unavailable'; error: string };
  upload: ReturnType<Uploader['stats']> | { state: 'disabled' };
  healthy: boolean;
}

export class Agent {
  readonly calibration: Calibration;
  readonly engine: MetricsEngine;
  readonly driver: FwpDriver;
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
  ) {
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
    this.link = new SerialLink({
      path: config.serial.path,
      baudRate: config.serial.baudRate,
      maxFrame: MAX_WIRE_FRAME - 1,
      reopenBaseMs: config.serial.reopenBaseMs,
      reopenCapMs: config.serial.reopenCapMs,
      silenceTimeoutMs: config.serial.silenceTimeoutMs,
      readCoalesceMs: config.serial.readCoalesceMs,
      onFrame: (frame) => this.driver.onFrame(frame),
    });
    this.driver = new FwpDriver(this.engine, (b) => this.link.write(b), {
      onHello: (hello, atBoot) => {
        this.log.info({ hello, atBoot }, atBoot ? 'board booted' : 'board hello');
        if (hello.ticksPerRev !== this.calibration.ticksPerRev) {
          this.log.error(
            { boardTicksPerRev: hello.ticksPerRev, calibrationTicksPerRev: this.calibration.ticksPerRev, calibration: this.calibration.model },
            'board and calibration disagree on flywheel ticks per revolution: wrong calibration for this bike',
          );
        }
      },
      onLog: (level, text) => {
        const fn = level >= LogLevel.ERROR ? 'error' : level === LogLevel.WARN ? 'warn' : level === LogLevel.INFO ? 'info' : 'debug';
        this.log[fn]({ board: true }, text);
      },
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
      this.sinks.unshift((r) => spool.append(r, 0));
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
          backoffBaseMs: m.backoffBaseMs,
          backoffCapMs: m.backoffCapMs,
          deflate: m.deflate,
          pollMs: m.pollMs,
          tls: m.tls,
          log: this.log,
        });
        this.uploader.start();
      }
    } catch (err) {
      this.spoolError = (err as Error).message;
      this.log.error({ err: this.spoolError }, 'spool unavailable: serving live figures only, nothing is stored');
    }
    this.link.on('state', (state: LinkState, detail) => {
      const lvl = state === 'waiting' ? 'warn' : 'info';
      this.log[lvl]({ link: state, path: this.link.path, ...detail }, `link ${state}`);
      if (state !== 'open') this.driver.cancelAll(`link ${state}`);
    });
    this.link.on('open', () => {
      this.driver.linkOpened();
      this.driver
        .request(RequestOp.GET_HELLO, undefined, { timeoutMs: this.config.serial.requestTimeoutMs, retries: this.config.serial.requestRetries })
        .catch((err: Error) => this.log.warn({ err: err.message }, 'board did not answer hello'));
    });
    this.link.start();
    const every = this.config.log.statsIntervalS;
    if (every > 0) {
      this.statsTimer = setInterval(() => this.logStats(), every * 1000);
      this.statsTimer.unref();
    }
  }

  health(): AgentHealth {
    const c = this.driver.counters;
    const link = { ...this.link.snapshot(), path: this.link.path };
    return {
      deviceId: this.config.device.id,
      link,
      protocol: {
        frames: c.frames,
        samples: c.samples,
        errors: c.errorsByName(),
        lostFrames: c.lostFrames,
        seqGaps: c.seqGaps,
        boardResets: c.boardResets,
        requestTimeouts: c.requestTimeouts,
      },
      board: { hello: this.driver.hello, status: this.driver.status },
      engine: this.engine.counters,
      spool: this.spool ? { state: 'open', ...this.spool.stats() } : { state: 'unavailable', error: this.spoolError },
      upload: this.uploader ? this.uploader.stats() : { state: 'disabled' },
      healthy: link.state === 'open' && c.frames > 0 && this.spool !== null && !this.spool.stats().writeFailing,
    };
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
    this.driver.cancelAll('agent stopping');
    await this.link.stop();
    await this.uploader?.stop(2000);
    this.uploader = null;
    this.spool?.close();
    this.spool = null;
    this.spoolError = 'closed';
  }
}
