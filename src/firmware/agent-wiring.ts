/**
 * The board update as the running agent serves it: the updater on the fwp
 * driver, idle tracking from the records, and the local API's board methods
 * (board.info, board.upload, board.update). Kept out of agent/agent.ts so the
 * composition root only plugs it in.
 */
import type { BoardInfoResult, FwInfoView } from '../contracts/api.js';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiError } from '../api/hub.js';
import { errorCode } from '../util/files.js';
import type { AgentConfig } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { LiveRecord } from '../metrics/record.js';
import { readTrustedKeyFiles, type TrustedKey } from '../signing/signature.js';
import type { FwpProtocol } from '../protocol/fwp/protocol.js';
import { BoardUpdater, type BoardUpdateStatus } from './board-updater.js';
import { FirmwareError, MAX_IMAGE_BYTES, readImage, type FirmwareImage } from './image.js';
import type { BoardHello } from '../contracts/health.js';
import {
  SLOT_STATE_NAMES,
  SlotState,
  XFER_STATE_NAMES,
  XferState,
  compareFwVersions,
  parseFwVersion,
  versionText,
  type FwInfo,
} from '../protocol/fwp/fwu.js';

/** Where a release puts the board images it ships (scripts/release --board-firmware): beside dist/ in the bundle. */
export const BUNDLED_IMAGES_DIR = fileURLToPath(new URL('../../board-firmware/', import.meta.url));

export interface BoardServiceDeps {
  config: AgentConfig;
  protocol: FwpProtocol;
  linkOpen: () => boolean;
  lowLatency: (on: boolean) => void;
  rideActive: () => boolean;
  log: Logger;
  onChange: () => void;
}

/** Largest piece of an image in one board.upload call (base64 keeps it under the API's 64 KiB line). */
export const UPLOAD_PIECE_BYTES = 32 * 1024;

export class BoardService {
  readonly updater: BoardUpdater;
  private lastActiveMs = Date.now();
  private readonly dir: string;
  private readonly keys: TrustedKey[];
  /** Bundled images already judged for this board (path -> sha256): each is offered once per agent run. */
  private readonly judged = new Set<string>();

  constructor(private readonly d: BoardServiceDeps) {
    const u = d.config.board.update;
    this.dir = join(d.config.dataDir, 'board-update');
    let keys: TrustedKey[] = [];
    try {
      keys = readTrustedKeyFiles(u.trustedKeys);
    } catch (err) {
      d.log.error({ err }, 'board firmware keys unreadable: every board image is refused');
    }
    this.keys = keys;
    this.updater = new BoardUpdater(
      {
        dir: this.dir,
        trustedKeys: keys,
        idleS: u.idleS,
        waitIdleMaxS: u.waitIdleMaxS,
        confirmDeadlineS: u.confirmDeadlineS,
        request: { timeoutMs: d.config.serial.requestTimeoutMs, retries: d.config.serial.requestRetries },
        log: d.log,
        onChange: d.onChange,
      },
      {
        driver: d.protocol.driver,
        linkOpen: d.linkOpen,
        idleForMs: () => (d.rideActive() ? 0 : Date.now() - this.lastActiveMs),
        onProgress: (l) => d.protocol.setProgressListener(l),
        lowLatency: d.lowLatency,
      },
    );
  }

  /** A record sink: pedalling marks the bike busy. No allocation. */
  readonly onRecord = (r: LiveRecord): void => {
    if (r.cadenceRpm > 0 || r.powerW > 0) this.lastActiveMs = Date.now();
  };

  start(): void {
    this.updater.start();
    this.d.protocol.onHello((hello) => this.offerBundled(hello));
  }

  /**
   * The newest image shipped with the agent for this board's model, when it
   * is newer than what the board runs, becomes the update job (installed when
   * the bike is idle). An image whose update failed before is not tried again
   * by itself (a technician can, with board update).
   */
  private offerBundled(hello: BoardHello): void {
    const dir = this.d.config.board.update.imagesDir ?? BUNDLED_IMAGES_DIR;
    if (dir === '' || hello.bootMode !== 'application' || hello.boardModel === null) return;
    const running = parseFwVersion(hello.firmware);
    if (!running) return;
    let names: string[];
    try {
      names = readdirSync(dir)
        .filter((n) => n.endsWith('.fwimg'))
        .sort();
    } catch {
      return; // no images shipped
    }
    let best: { img: FirmwareImage; file: Buffer } | null = null;
    for (const n of names) {
      const path = join(dir, n);
      let file: Buffer;
      let img: FirmwareImage;
      try {
        file = readFileSync(path);
        img = readImage(file, this.keys);
      } catch (err) {
        if (!this.judged.has(path)) this.d.log.warn({ err, image: path }, 'bundled board image refused');
        this.judged.add(path);
        continue;
      }
      if (img.header.boardModel !== hello.boardModel || compareFwVersions(img.version, running) <= 0) continue;
      if (!best || compareFwVersions(img.version, best.img.version) > 0) best = { img, file };
    }
    if (!best) return;
    const sha = best.img.sha256.toString('hex');
    const last = this.updater.lastJob();
    if (last && last.sha256 === sha) {
      if (last.stage === 'failed' && !this.judged.has(sha))
        this.d.log.warn({ version: last.version, error: last.error }, 'bundled board image failed before: not tried again by itself');
      this.judged.add(sha);
      return;
    }
    if (last && last.stage !== 'done' && last.stage !== 'failed') return; // another update is on
    try {
      this.updater.submit(best.file);
      this.d.log.info(
        { version: best.img.header.version, running: hello.firmware },
        "bundled board image newer than the board's: update queued",
      );
    } catch (err) {
      this.d.log.warn({ err }, 'bundled board image not queued');
    }
  }

  stop(): void {
    this.updater.stop();
  }

  status(): BoardUpdateStatus | null {
    return this.updater.status();
  }

  async info(): Promise<BoardInfoResult> {
    const hello = this.d.protocol.driver.hello;
    if (!this.d.linkOpen() || !hello) throw new ApiError('unavailable', 'no board on the link');
    try {
      return { hello, ...describeInfo(await this.updater.info()), update: this.updater.status() };
    } catch (err) {
      if (err instanceof FirmwareError)
        return { hello, bootMode: hello.bootMode, updatable: false, reason: err.message, update: this.updater.status() };
      throw new ApiError('unavailable', `the board did not answer FW_INFO: ${(err as Error).message}`);
    }
  }

  /** One piece of an image, at its offset (offset 0 starts a new upload). */
  upload(offset: number, b64: string): { received: number } {
    const data = Buffer.from(b64, 'base64');
    if (data.length > UPLOAD_PIECE_BYTES) throw new ApiError('bad_request', `a piece is at most ${UPLOAD_PIECE_BYTES} bytes`);
    if (offset + data.length > MAX_IMAGE_BYTES + 65536) throw new ApiError('bad_request', 'image too large');
    mkdirSync(this.dir, { recursive: true, mode: 0o750 });
    let fd: number;
    try {
      fd = openSync(join(this.dir, 'upload.part'), offset === 0 ? 'w' : 'r+');
    } catch (err) {
      if (errorCode(err) === 'ENOENT') throw new ApiError('bad_request', 'an upload starts at offset 0');
      throw err;
    }
    try {
      writeSync(fd, data, 0, data.length, offset);
    } finally {
      closeSync(fd);
    }
    return { received: offset + data.length };
  }

  /** Check the uploaded image (its sha256 as the client computed it) and accept it as the update job. */
  update(sha256: string): BoardUpdateStatus {
    let file: Buffer;
    try {
      file = readFileSync(join(this.dir, 'upload.part'));
    } catch {
      throw new ApiError('not_found', 'nothing uploaded: send the image with board.upload first');
    }
    const got = createHash('sha256').update(file).digest('hex');
    if (got !== sha256)
      throw new ApiError(
        'bad_request',
        `the uploaded file's sha256 is ${got.slice(0, 12)}…, the client said ${sha256.slice(0, 12)}…: upload it again`,
      );
    try {
      this.updater.submit(file);
    } catch (err) {
      if (err instanceof FirmwareError) throw new ApiError('refused', `${err.code}: ${err.message}`);
      throw err;
    }
    return this.updater.status()!;
  }
}

/** FW_INFO for people and `--json` (board info). */
export function describeInfo(info: FwInfo): FwInfoView {
  return {
    bootMode: info.bootMode === 1 ? 'bootloader' : 'application',
    boardModel: info.boardModel,
    activeSlot: info.activeSlot,
    slotSize: info.slotSize,
    maxChunk: info.maxChunk,
    window: info.window,
    slots: info.slots.map((s, i) => ({
      slot: i,
      state: SLOT_STATE_NAMES[s.state] ?? `state ${s.state}`,
      version: s.state === SlotState.EMPTY ? null : versionText(s.version),
      active: i === info.activeSlot,
    })),
    transfer:
      info.xferState === XferState.NONE
        ? null
        : {
            state: XFER_STATE_NAMES[info.xferState] ?? `state ${info.xferState}`,
            version: versionText(info.xferVersion),
            size: info.xferSize,
            next: info.xferNext,
            slot: info.xferSlot,
            sha256: Buffer.from(info.xferSha256).toString('hex'),
          },
  };
}
