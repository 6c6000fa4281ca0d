/**
 * The agent's side of a flywheel-board firmware update (SPEC.md section 11):
 * one job at a time, kept in `<dataDir>/board-update/` (job.json and the
 * signed image), so it carries on after an agent restart, a link loss or a
 * board power cycle. Every step starts from what the board says (FW_INFO),
 * never from what the agent remembers: the board's offset is where a transfer
 * resumes, the board's slot states say whether a trial image was confirmed or
 * reverted.
 *
 *   waiting-idle -> transferring (bootloader, FW_BEGIN, chunks, FW_VERIFY)
 *                -> testing (FW_TEST_BOOT, HELLO from the new image, FW_CONFIRM)
 *                -> done | failed
 *
 * Never during a ride: a job waits until the bike is idle (no ride, no
 * pedalling for `idleS`), at most `waitIdleMaxS`, then fails rather than
 * interrupt a rider. The requests are board-session.ts's, the chunks
 * chunk-sender.ts's; this module decides what comes next.
 *
 * Over 400 lines: the job's states and the resume decision at each step read
 * as one machine; split, each half would need the other's states to make sense.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log/logger.js';
import type { TrustedKey } from '../signing/signature.js';
import type { FwpDriver, RequestOptions } from '../protocol/fwp/driver.js';
import { SlotState, XferState, compareFwVersions, versionText, type FwInfo, type FwResume } from '../protocol/fwp/fwu.js';
import { BoardSession } from './board-session.js';
import { sendChunks, TransferInterrupted } from './chunk-sender.js';
import { FirmwareError, checkForBoard, readImage, type FirmwareImage } from './image.js';
import type { BoardUpdateStatus, UpdateJob, UpdateStage } from './update-job.js';

export type { BoardUpdateStatus, UpdateJob, UpdateStage } from './update-job.js';

export interface BoardUpdaterOptions {
  dir: string;
  trustedKeys: readonly TrustedKey[];
  idleS: number;
  waitIdleMaxS: number;
  confirmDeadlineS: number;
  request: RequestOptions;
  log: Logger;
  /** Progress or stage changed (the status topic and health stream are refreshed). */
  onChange?: () => void;
}

export interface BoardUpdaterPorts {
  driver: FwpDriver;
  linkOpen(): boolean;
  /** Milliseconds since the rider last pedalled or a ride was on (0 while riding). */
  idleForMs(): number;
  /** Register the FW_PROGRESS listener (one at a time). */
  onProgress(listener: ((next: number, status: number, free: number) => void) | null): void;
  /** Read the link without pacing while chunks are in flight (SerialLink.setLowLatency). */
  lowLatency(on: boolean): void;
}

const JOB_FILE = 'job.json';
const IMAGE_FILE = 'image.fwimg';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

export class BoardUpdater {
  private job: UpdateJob | null = null;
  private image: FirmwareImage | null = null;
  private running = false;
  private stopped = false;
  private written = 0;
  private transferStartMs = 0;
  private transferStartOffset = 0;
  private lastPersistMs = 0;
  private lastInterruption = '';

  private readonly session: BoardSession;

  constructor(
    private readonly o: BoardUpdaterOptions,
    private readonly ports: BoardUpdaterPorts,
  ) {
    this.session = new BoardSession(ports.driver, o.request, () => this.stopped);
    mkdirSync(o.dir, { recursive: true, mode: 0o750 });
    this.load();
  }

  private load(): void {
    let job: UpdateJob;
    try {
      job = JSON.parse(readFileSync(join(this.o.dir, JOB_FILE), 'utf8')) as UpdateJob;
    } catch {
      return;
    }
    this.job = job;
    if (job.stage === 'done' || job.stage === 'failed') return;
    try {
      this.image = readImage(readFileSync(join(this.o.dir, IMAGE_FILE)), this.o.trustedKeys);
      if (this.image.sha256.toString('hex') !== job.sha256) throw new FirmwareError('digest_mismatch', "the kept image is not the job's");
      this.o.log.info({ version: job.version, stage: job.stage }, 'board firmware update carries on');
    } catch (err) {
      this.finish(
        'failed',
        err instanceof FirmwareError ? err : new FirmwareError('not_an_image', `the kept image cannot be read: ${(err as Error).message}`),
      );
    }
  }

  /** Start working on a kept job (after the agent started). */
  start(): void {
    if (this.job && !this.terminal()) void this.drive();
  }

  stop(): void {
    this.stopped = true;
    this.ports.onProgress(null);
  }

  private terminal(): boolean {
    return !this.job || this.job.stage === 'done' || this.job.stage === 'failed';
  }

  /**
   * A new update from a signed image file's bytes: checked (signature, and
   * model and version against the board when it has said HELLO) before it
   * is accepted; throws FirmwareError. The same image again returns its job.
   */
  submit(file: Buffer): UpdateJob {
    const img = readImage(file, this.o.trustedKeys);
    const hello = this.ports.driver.hello;
    if (hello && hello.protoMinor < 1)
      throw new FirmwareError(
        'board_unsupported',
        `the board speaks fwp 1.${hello.protoMinor}: its firmware takes no updates over the link (fwp 1.1); use a programmer`,
      );
    if (hello && hello.boardModel !== null && hello.bootMode === 'application') {
      const running = hello.firmware.split('.').map(Number) as [number, number, number];
      checkForBoard(img, hello.boardModel, running);
      if (compareFwVersions(img.version, running) === 0)
        throw new FirmwareError('same_version', `the board already runs ${img.header.version}`);
    }
    const sha = img.sha256.toString('hex');
    if (this.job && !this.terminal()) {
      if (this.job.sha256 === sha) return this.job;
      if (this.job.stage !== 'waiting-idle')
        throw new FirmwareError('busy', `an update to ${this.job.version} is ${this.job.stage}; it must finish first`);
      this.o.log.info({ replaced: this.job.version, by: img.header.version }, 'board firmware update waiting for idle replaced');
    }
    writeFileSync(join(this.o.dir, `${IMAGE_FILE}.tmp`), file);
    renameSync(join(this.o.dir, `${IMAGE_FILE}.tmp`), join(this.o.dir, IMAGE_FILE));
    this.image = img;
    this.job = {
      id: `${sha.slice(0, 12)}-${Date.now().toString(36)}`,
      version: img.header.version,
      boardModel: img.header.boardModel,
      size: img.header.size,
      sha256: sha,
      stage: 'waiting-idle',
      createdAt: new Date().toISOString(),
      startedAt: null,
      finishedAt: null,
      fromVersion: hello?.bootMode === 'application' ? hello.firmware : null,
      bytesSent: 0,
      resumes: 0,
      retransmits: 0,
      error: null,
    };
    this.written = 0;
    this.persist();
    this.o.log.info(
      { version: img.header.version, size: img.header.size, signedBy: img.signedBy },
      'board firmware update accepted: starts when the bike is idle',
    );
    this.o.onChange?.();
    void this.drive();
    return this.job;
  }

  /** The current or last job (job.json), null when there was none. */
  lastJob(): Readonly<UpdateJob> | null {
    return this.job;
  }

  status(): BoardUpdateStatus | null {
    const j = this.job;
    if (!j) return null;
    const written = j.stage === 'done' ? j.size : this.written;
    const elapsedS = (Date.now() - this.transferStartMs) / 1000;
    return {
      stage: j.stage,
      version: j.version,
      fromVersion: j.fromVersion,
      size: j.size,
      written,
      percent: Math.floor((written / j.size) * 1000) / 10,
      bytesPerS:
        j.stage === 'transferring' && this.transferStartMs > 0 && elapsedS > 0.5
          ? Math.round((this.written - this.transferStartOffset) / elapsedS)
          : null,
      bytesSent: j.bytesSent,
      resumes: j.resumes,
      retransmits: j.retransmits,
      startedAt: j.startedAt,
      finishedAt: j.finishedAt,
      error: j.error,
    };
  }

  /** Whether the board is (or is about to be) away from its application: live figures are then not the rider's. */
  get boardBusy(): boolean {
    return this.job !== null && (this.job.stage === 'transferring' || this.job.stage === 'testing');
  }

  private persist(): void {
    if (!this.job) return;
    const tmp = join(this.o.dir, `${JOB_FILE}.tmp`);
    writeFileSync(tmp, `${JSON.stringify(this.job, null, 1)}\n`);
    renameSync(tmp, join(this.o.dir, JOB_FILE));
    this.lastPersistMs = Date.now();
  }

  private setStage(stage: UpdateStage): void {
    const j = this.job!;
    if (j.stage === stage) return;
    j.stage = stage;
    if (stage === 'transferring' && !j.startedAt) j.startedAt = new Date().toISOString();
    this.persist();
    this.o.log.info({ version: j.version, stage }, `board firmware update: ${stage}`);
    this.o.onChange?.();
  }

  private finish(stage: 'done' | 'failed', err?: FirmwareError): void {
    const j = this.job!;
    j.stage = stage;
    j.finishedAt = new Date().toISOString();
    j.error = err ? { code: err.code, message: err.message } : null;
    this.persist();
    if (stage === 'done') {
      this.o.log.info(
        { from: j.fromVersion, to: j.version, bytesSent: j.bytesSent, size: j.size, resumes: j.resumes, retransmits: j.retransmits },
        'board firmware updated',
      );
      rmSync(join(this.o.dir, IMAGE_FILE), { force: true });
    } else {
      this.o.log.error({ err, version: j.version, code: err?.code }, 'board firmware update failed');
    }
    this.o.onChange?.();
  }

  private async drive(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (!this.stopped && !this.terminal()) {
        if (!this.ports.linkOpen() || !this.ports.driver.hello) {
          await sleep(200);
          continue;
        }
        const j = this.job!;
        if (j.stage === 'waiting-idle') {
          if (this.ports.idleForMs() < this.o.idleS * 1000) {
            if (Date.now() - Date.parse(j.createdAt) > this.o.waitIdleMaxS * 1000) {
              this.finish(
                'failed',
                new FirmwareError(
                  'not_idle',
                  `the bike was not idle for ${this.o.idleS} s within ${this.o.waitIdleMaxS} s: not updated during a ride`,
                ),
              );
              break;
            }
            await sleep(500);
            continue;
          }
          this.setStage('transferring');
        }
        try {
          await this.step();
          this.lastInterruption = '';
        } catch (err) {
          if (err instanceof FirmwareError) {
            this.finish('failed', err);
            break;
          }
          // A timeout, a reset, a lost link: the next step asks the board where things stand.
          const why = (err as Error).message;
          if (why !== this.lastInterruption)
            this.o.log.warn({ err, stage: this.job?.stage }, "board firmware update interrupted: carries on from the board's state");
          this.lastInterruption = why;
          await sleep(300);
        }
      }
    } finally {
      this.running = false;
      this.ports.onProgress(null);
    }
  }

  /** FW_INFO (board info asks it too). */
  info(): Promise<FwInfo> {
    return this.session.info();
  }

  /** One step from the board's state; returns to the loop, which calls it again until the job ends. */
  private async step(): Promise<void> {
    const j = this.job!;
    const img = this.image!;
    const info = await this.info();
    if (info.boardModel !== j.boardModel)
      throw new FirmwareError('wrong_model', `the image is for board model ${j.boardModel}, this board is model ${info.boardModel}`);
    const ours =
      info.xferSize === j.size && Buffer.from(info.xferSha256).toString('hex') === j.sha256 && versionText(info.xferVersion) === j.version;
    const active = info.slots[info.activeSlot];
    if (j.fromVersion === null && info.bootMode === 0 && active.state === SlotState.VALID) {
      j.fromVersion = versionText(active.version);
      this.persist();
    }
    if (ours) {
      switch (info.xferState) {
        case XferState.CONFIRMED:
          this.written = j.size;
          this.finish('done');
          return;
        case XferState.REJECTED:
          // Rejected before this job test-booted it: an earlier attempt; this one sends it again.
          if (j.stage !== 'testing') break;
          throw new FirmwareError(
            'reverted',
            `the board went back to ${versionText(active.version)}: ${j.version} did not confirm within ${this.o.confirmDeadlineS} s of its test boot (it did not start, or never said HELLO)`,
          );
        case XferState.TESTING:
          this.setStage('testing');
          if (info.bootMode === 0 && this.ports.driver.hello?.firmware === j.version) await this.session.confirm();
          else await this.session.waitForHello(this.o.confirmDeadlineS * 1000 + 15_000);
          return;
        case XferState.VERIFIED:
          this.written = j.size;
          await this.session.enterBootloader(info);
          await this.testBoot();
          return;
        case XferState.RECEIVING:
          break;
        default:
          break;
      }
    } else if (info.bootMode === 0 && active.state === SlotState.VALID && versionText(active.version) === j.version) {
      this.written = j.size;
      this.finish('done');
      return;
    }
    if (!ours || info.xferState !== XferState.RECEIVING)
      checkForBoard(img, info.boardModel, active.state === SlotState.VALID ? active.version : null);
    await this.session.enterBootloader(info);
    const resume = await this.session.begin(this.image!);
    if (resume.next > 0) {
      j.resumes++;
      this.o.log.info({ version: j.version, from: resume.next, size: j.size }, "board firmware transfer resumes at the board's offset");
    }
    await this.transfer(resume);
    await this.verify();
  }

  /** The image from the board's offset (firmware/chunk-sender.ts); the job's counters and progress follow. */
  private async transfer(resume: FwResume): Promise<void> {
    const j = this.job!;
    this.written = resume.next;
    this.transferStartMs = Date.now();
    this.transferStartOffset = resume.next;
    try {
      await sendChunks(
        this.image!.image,
        resume,
        { ...this.ports, stopped: () => this.stopped },
        {
          sent: (n) => (j.bytesSent += n),
          resent: () => j.retransmits++,
          acked: (offset) => {
            // The status topic hears every 10 %.
            if (Math.floor((offset * 10) / j.size) !== Math.floor((this.written * 10) / j.size)) this.o.onChange?.();
            this.written = offset;
            if (Date.now() - this.lastPersistMs > 2000) this.persist();
          },
        },
      );
    } finally {
      this.persist();
    }
  }

  private verifyFailures = 0;

  private async verify(): Promise<void> {
    const j = this.job!;
    if (!(await this.session.verify(j.size))) {
      this.verifyFailures++;
      if (this.verifyFailures >= 2)
        throw new FirmwareError('transfer_failed', 'the image written to the board did not match its sha256 twice');
      throw new TransferInterrupted('the image written to the board did not match its sha256: sent again');
    }
    this.written = j.size;
    await this.testBoot();
  }

  private async testBoot(): Promise<void> {
    const before = this.ports.driver.helloCount;
    await this.session.testBoot(this.o.confirmDeadlineS);
    this.setStage('testing');
    await this.session.waitForHello(this.o.confirmDeadlineS * 1000 + 15_000, before);
  }
}
