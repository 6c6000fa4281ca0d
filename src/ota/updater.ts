/**
 * The over-the-air updater: a process of its own (unit
 * bike-telemetry-updater.service), the only one that writes the versions
 * folder. For each accepted offer:
 *
 *   downloading -> staging -> switching -> checking -> idle
 *                                  \-> rolling-back -> idle (version marked failed)
 *
 * Every phase is recorded in state.json (written atomically) before its work
 * starts and every phase's work can be done twice, so a power cut or kill -9
 * anywhere resumes where it stopped. `current` is a symlink replaced by one
 * rename, so it always names a complete, verified version; `previous` names
 * the one to go back to; `stable` names the last version that proved healthy
 * (the updater's own unit runs from it, so a bad version can never take the
 * updater down with it and leave nobody to roll back).
 *
 * Over 400 lines: one state machine whose phases share the recorded state
 * and resume from it after a power cut; bundle checks (bundle-check.ts) and
 * errors (errors.ts) are apart, each phase's work stays beside its record.
 */
import type { OtaStatusDetail } from '../contracts/mqtt.js';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  existsSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { basename, join } from 'node:path';
import type Database from 'better-sqlite3';
import { requireCjs } from '../util/require-cjs.js';
import type { Logger } from '../log/logger.js';
import { fetchAgentHealth } from '../api/client.js';
import type { AgentHealth } from '../contracts/health.js';
import { SCHEMA_VERSION } from '../spool/schema.js';
import { BundleError, MANIFEST_FILE, SIGNATURE_FILE, verifyBundle } from './manifest.js';
import { SignatureError, type TrustedKey } from '../signing/signature.js';
import type { Offer } from './offer.js';
import { writeFileAtomicSync } from '../util/files.js';
import { checkListing, checkManifestSignature, untar } from './bundle-check.js';
import { readOtaStateFile, type OtaState } from './state.js';
import { OtaError, RETRYABLE } from './errors.js';
import { currentRuntime, incompatibility } from './targets.js';

const SqliteDatabase = requireCjs('better-sqlite3') as typeof Database;

export { OtaError } from './errors.js';

export type { OtaPhase, OtaState } from './state.js';

export interface UpdaterOptions {
  root: string;
  trustedKeys: readonly TrustedKey[];
  dataDir: string;
  /** The agent's API socket, asked each time: the agent's runtime folder may appear after the updater starts. */
  socketPath: string | (() => string);
  healthDeadlineMs: number;
  restartCommand: readonly string[];
  /**
   * Run before each restart, its failure ignored: clears a start limit the
   * agent's unit hit (a crashing version does, within seconds), without which
   * systemd would refuse the restart that rolls back. Empty: none.
   */
  resetCommand?: readonly string[];
  log: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Progress and results (the status topic). */
  report: (state: OtaState, detail: OtaStatusDetail) => void;
  /** A bundle that would unpack to more than this is refused before unpacking. */
  maxUnpackedBytes?: number;
  /** Download attempts per offer, and the slowest download accepted (after a grace period). */
  downloadAttempts?: number;
  downloadMinBytesPerS?: number;
  downloadGraceMs?: number;
}

const DOWNLOAD_ATTEMPTS = 6;
/** A download slower than this (after a minute's grace) is cut and resumed: a trickling server cannot stall the updater. */
const DOWNLOAD_MIN_BYTES_PER_S = 4096;
const DOWNLOAD_GRACE_MS = 60_000;
const DEFAULT_MAX_UNPACKED = 512 << 20;
/** Free space left after unpacking, for the spool and the logs. */
const UNPACK_MARGIN_BYTES = 32 << 20;
const STEP_DELAY_MS = Number(process.env.BIKE_TELEMETRY_OTA_STEP_DELAY_MS ?? 0) || 0;

export class Updater {
  readonly versions: string;
  readonly current: string;
  readonly previous: string;
  readonly stable: string;
  readonly stateDir: string;
  private readonly stateFile: string;
  state: OtaState;
  private busy = false;

  constructor(private readonly o: UpdaterOptions) {
    this.versions = join(o.root, 'versions');
    this.current = join(o.root, 'current');
    this.previous = join(o.root, 'previous');
    this.stable = join(o.root, 'stable');
    this.stateDir = join(o.root, 'ota');
    this.stateFile = join(this.stateDir, 'state.json');
    mkdirSync(this.stateDir, { recursive: true });
    this.state = readOtaStateFile(this.stateFile);
    this.ensureStable();
  }

  /**
   * An install from before `stable` existed: the version the updater started
   * from is the one that proved itself (mid-update, the one it is updating from).
   */
  private ensureStable(): void {
    if (existsSync(this.stable) || !existsSync(this.current)) return;
    const from = this.state.phase !== 'idle' && this.state.from ? `versions/${this.state.from}` : readlinkSync(this.current);
    replaceSymlink(this.stable, from);
    this.o.log.info({ stable: from }, 'stable version recorded');
  }

  /** The version `current` names (its folder's name). */
  currentVersion(): string {
    return basename(readlinkSync(this.current));
  }

  get isBusy(): boolean {
    return this.busy;
  }

  private save(patch: Partial<OtaState>, detail: OtaStatusDetail = {}): void {
    this.state = { ...this.state, ...patch };
    writeFileAtomicSync(this.stateFile, `${JSON.stringify(this.state, null, 1)}\n`);
    this.o.report(this.state, detail);
  }

  /** Remember an offer id (acted on once) and, for a refusal, say why. */
  noteOffer(id: string, refusal?: { version: string; reason: string }): void {
    const seen = [...this.state.seenOffers.filter((x) => x !== id), id].slice(-500);
    this.save({
      seenOffers: seen,
      ...(refusal
        ? { last: { version: refusal.version, result: 'refused' as const, reason: refusal.reason, at: new Date().toISOString() } }
        : {}),
    });
  }

  /** Act on a validated offer: download, verify, stage, switch, check, and roll back on failure. */
  async apply(offer: Offer): Promise<void> {
    if (this.busy) throw new OtaError('busy', 'an update is already in progress');
    this.noteOffer(offer.id);
    // The offered bundle is always the one verified and installed, even when versions/<v> already exists.
    rmSync(this.verifiedMarker(offer.version), { force: true });
    this.save({ phase: 'downloading', offer, from: this.currentVersion(), baseline: null }, { version: offer.version });
    await this.resume();
  }

  /** Carry on from the recorded phase (after apply, or at start after a crash or power cut). */
  async resume(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      for (;;) {
        const s = this.state;
        const offer = s.offer;
        if (s.phase === 'idle' || !offer) return;
        // Fault injection for the power-cut tests: a pause after each recorded phase, so a kill lands inside it.
        if (STEP_DELAY_MS > 0) await new Promise((r) => setTimeout(r, STEP_DELAY_MS));
        try {
          if (s.phase === 'downloading') {
            await this.downloadWithRetries(offer);
            this.save({ phase: 'staging' }, { version: offer.version });
          } else if (s.phase === 'staging') {
            this.stage(offer);
            this.save({ phase: 'switching', baseline: await this.baseline() }, { version: offer.version });
          } else if (s.phase === 'switching') {
            this.switchTo(offer.version);
            this.restart();
            this.save({ phase: 'checking' }, { version: offer.version });
          } else if (s.phase === 'checking') {
            await this.check(offer.version);
            this.o.log.info({ version: offer.version, from: s.from }, 'update healthy');
            this.finish(offer.version, 'updated', null);
          } else if (s.phase === 'rolling-back') {
            this.rollBack();
            const reason = s.last?.reason ?? 'rolled back';
            this.save(
              { phase: 'idle', offer: null, failedVersions: [...new Set([...s.failedVersions, offer.version])] },
              { version: offer.version, result: 'rolled-back', reason },
            );
            return;
          }
        } catch (err) {
          const reason = (err as Error).message;
          this.o.log.error({ version: offer.version, phase: s.phase, err }, 'update failed');
          if (s.phase === 'checking' || s.phase === 'switching') {
            // The new version is (or may be) current: go back.
            this.save({
              phase: 'rolling-back',
              last: { version: offer.version, result: 'rolled-back', reason, at: new Date().toISOString() },
            });
          } else {
            // Nothing was touched: drop the download and the staging.
            this.cleanup(offer.version);
            this.finish(offer.version, 'failed', reason);
            return;
          }
        }
      }
    } finally {
      this.busy = false;
    }
  }

  private finish(version: string, result: 'updated' | 'failed', reason: string | null): void {
    // Healthy: from now on the updater starts from this version too.
    if (result === 'updated') replaceSymlink(this.stable, `versions/${version}`);
    const failed = result === 'failed' ? [...new Set([...this.state.failedVersions, version])] : this.state.failedVersions;
    this.save(
      {
        phase: 'idle',
        offer: null,
        baseline: null,
        failedVersions: failed,
        last: { version, result, reason, at: new Date().toISOString() },
      },
      { version, result, reason },
    );
    this.cleanup(version);
  }

  private partFile(v: string): string {
    return join(this.stateDir, `download-${v}.tar.gz.part`);
  }

  private tarFile(v: string): string {
    return join(this.stateDir, `download-${v}.tar.gz`);
  }

  private cleanup(version: string): void {
    rmSync(this.partFile(version), { force: true });
    rmSync(this.tarFile(version), { force: true });
    rmSync(join(this.versions, `.staging-${version}`), { recursive: true, force: true });
  }

  /**
   * A dropped connection is normal on a bike's Wi-Fi: try again with backoff,
   * resuming from the bytes already on disk, before giving the offer up.
   */
  private async downloadWithRetries(offer: Offer): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.download(offer);
        return;
      } catch (err) {
        if (attempt >= (this.o.downloadAttempts ?? DOWNLOAD_ATTEMPTS) || !(err instanceof OtaError && RETRYABLE.has(err.code))) throw err;
        const waitMs = Math.min(30_000, 500 * 2 ** attempt);
        this.o.log.warn({ version: offer.version, attempt, err, retryInMs: waitMs }, 'download interrupted: resuming');
        await new Promise((r) => setTimeout(r, waitMs));
      }
    }
  }

  /** HTTP(S) GET, resumed from what a previous attempt got (Range), then size and sha256 checked. */
  private async download(offer: Offer): Promise<void> {
    const tar = this.tarFile(offer.version);
    if (existsSync(tar) && (await sha256File(tar)) === offer.sha256) return;
    const part = this.partFile(offer.version);
    const have = existsSync(part) ? statSync(part).size : 0;
    if (have > offer.size) rmSync(part);
    const from = existsSync(part) ? statSync(part).size : 0;
    if (from < offer.size) {
      const res = await request(offer.url, from > 0 ? { Range: `bytes=${from}-` } : {});
      if (res.statusCode !== 200 && res.statusCode !== 206) {
        res.resume();
        throw new OtaError('http_status', `download ${offer.url}: HTTP ${res.statusCode}`);
      }
      // A server that ignores Range sends everything again: start over.
      const append = res.statusCode === 206 && from > 0;
      const fd = openSync(part, append ? 'a' : 'w');
      let got = append ? from : 0;
      const minRate = this.o.downloadMinBytesPerS ?? DOWNLOAD_MIN_BYTES_PER_S;
      const deadlineMs = (this.o.downloadGraceMs ?? DOWNLOAD_GRACE_MS) + ((offer.size - got) / minRate) * 1000;
      let deadline: NodeJS.Timeout | undefined;
      try {
        await new Promise<void>((resolve, reject) => {
          // The first error settles the promise; later events from the destroyed response change nothing.
          deadline = setTimeout(() => {
            reject(
              new OtaError(
                'too_slow',
                `download slower than ${minRate} B/s: ${got} of ${offer.size} bytes after ${Math.round(deadlineMs / 1000)} s`,
              ),
            );
            res.destroy();
          }, deadlineMs);
          res.on('data', (chunk: Buffer) => {
            got += chunk.length;
            if (got > offer.size) {
              reject(new OtaError('too_large', `download larger than the offered ${offer.size} bytes`));
              res.destroy();
              return;
            }
            try {
              writeFileSync(fd, chunk);
            } catch (err) {
              reject(new OtaError('no_space', `download not written: ${(err as Error).message}`));
              res.destroy();
            }
          });
          res.on('end', () => resolve());
          res.on('error', (err) => reject(new OtaError('interrupted', `download interrupted: ${err.message}`)));
          res.on('aborted', () => reject(new OtaError('interrupted', 'download interrupted')));
          res.on('close', () => (res.complete ? resolve() : reject(new OtaError('interrupted', 'download interrupted'))));
        });
        fsyncSync(fd);
      } finally {
        clearTimeout(deadline);
        closeSync(fd);
      }
    }
    const size = statSync(part).size;
    if (size !== offer.size) throw new OtaError('size_mismatch', `downloaded ${size} bytes, the offer says ${offer.size}`);
    const digest = await sha256File(part);
    if (digest !== offer.sha256) {
      rmSync(part);
      throw new OtaError('digest_mismatch', `sha256 of the download is ${digest}, the offer says ${offer.sha256}`);
    }
    renameSync(part, tar);
  }

  private verifiedMarker(v: string): string {
    return join(this.stateDir, `verified-${v}`);
  }

  /**
   * Unpack into a staging folder and verify, then rename into versions/. In
   * this order, so nothing unverified is unpacked in full: the listing is
   * checked (one top folder, a real directory; only files, folders and
   * symlinks inside it; the unpacked size within the limit and the free
   * space), the signed manifest is unpacked alone and its signature checked,
   * then everything is unpacked and every file checked against the manifest,
   * and the spool's schema against the bundle's.
   */
  private stage(offer: Offer): void {
    const v = offer.version;
    const dest = join(this.versions, v);
    // Resuming after a crash once this offer's bundle was verified and installed.
    if (existsSync(join(dest, 'manifest.json')) && existsSync(this.verifiedMarker(v))) return;
    const tarball = this.tarFile(v);
    const top = `bike-telemetry-${v}`;
    const unpacked = checkListing(tarball, top);
    const limit = this.o.maxUnpackedBytes ?? DEFAULT_MAX_UNPACKED;
    if (unpacked > limit) throw new OtaError('too_big_unpacked', `the bundle unpacks to ${unpacked} bytes, more than the ${limit} allowed`);
    mkdirSync(this.versions, { recursive: true });
    const fs = statfsSync(this.versions);
    const free = fs.bavail * fs.bsize;
    if (unpacked + UNPACK_MARGIN_BYTES > free)
      throw new OtaError('no_space', `the bundle unpacks to ${unpacked} bytes; ${free} bytes are free`);
    const staging = join(this.versions, `.staging-${v}`);
    rmSync(staging, { recursive: true, force: true });
    mkdirSync(staging, { recursive: true });
    untar(tarball, staging, [`${top}/${MANIFEST_FILE}`, `${top}/${SIGNATURE_FILE}`]);
    const signed = checkManifestSignature(join(staging, top), this.o.trustedKeys);
    // Addons for another CPU or Node would crash the agent at start: refused before unpacking anything else.
    const why = incompatibility(signed, currentRuntime());
    if (why) throw new OtaError('incompatible', `version ${v} refused before unpacking: ${why}`);
    untar(tarball, staging, []);
    const entries = readdirSync(staging);
    const inner = join(staging, top);
    if (entries.length !== 1 || entries[0] !== top)
      throw new OtaError('bad_bundle', `the bundle must hold ${top}/ alone, it holds ${entries.slice(0, 5).join(', ')}`);
    // A symlink here would be verified as one folder and installed as another.
    if (!lstatSync(inner).isDirectory()) throw new OtaError('bad_bundle', `${top} in the bundle is not a folder`);
    let manifest;
    try {
      manifest = verifyBundle(inner, this.o.trustedKeys);
    } catch (err) {
      if (err instanceof BundleError || err instanceof SignatureError) throw new OtaError('bad_bundle', `bundle refused: ${err.message}`);
      throw err;
    }
    if (manifest.version !== v) throw new OtaError('bad_bundle', `the bundle is version ${manifest.version}, the offer says ${v}`);
    const mismatch = incompatibility(manifest, currentRuntime());
    if (mismatch) throw new OtaError('incompatible', `version ${v}: ${mismatch}`);
    const spool = spoolSchema(this.o.dataDir);
    if (spool !== null && spool > manifest.spoolSchema) {
      throw new OtaError(
        'incompatible',
        `version ${v} reads spool schema up to ${manifest.spoolSchema}, the spool is at ${spool}: it would not read the records kept`,
      );
    }
    if (spool !== null && spool < manifest.minSpoolSchema)
      throw new OtaError('incompatible', `version ${v} migrates spools from schema ${manifest.minSpoolSchema}, the spool is at ${spool}`);
    // Replace an older copy of the same version (a rolled-back one, say) by two renames, never by copying into it.
    const old = join(this.versions, `.old-${v}`);
    rmSync(old, { recursive: true, force: true });
    if (existsSync(dest)) renameSync(dest, old);
    renameSync(inner, dest);
    rmSync(old, { recursive: true, force: true });
    rmSync(staging, { recursive: true, force: true });
    writeFileSync(this.verifiedMarker(v), new Date().toISOString());
  }

  /** previous := current's target, then current := versions/<v>; each by one rename. */
  private switchTo(v: string): void {
    const target = `versions/${v}`;
    const now = readlinkSync(this.current);
    if (now !== target) {
      replaceSymlink(this.previous, now);
      replaceSymlink(this.current, target);
    }
    this.o.log.info({ from: now, to: target }, 'switched current');
  }

  private rollBack(): void {
    const prev = existsSync(this.previous) ? readlinkSync(this.previous) : null;
    if (!prev) throw new OtaError('no_previous', 'no previous version to go back to');
    if (readlinkSync(this.current) !== prev) replaceSymlink(this.current, prev);
    this.restart();
    this.o.log.warn({ to: prev }, 'rolled back');
  }

  private restart(): void {
    const reset = this.o.resetCommand ?? [];
    if (reset.length > 0) spawnSync(reset[0], reset.slice(1), { stdio: 'ignore', timeout: 30_000 });
    const [cmd, ...args] = this.o.restartCommand;
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0)
      this.o.log.warn({ cmd: this.o.restartCommand.join(' '), status: r.status, err: r.stderr?.trim() }, 'restart command failed');
  }

  private health(): Promise<AgentHealth | null> {
    return fetchAgentHealth(typeof this.o.socketPath === 'function' ? this.o.socketPath() : this.o.socketPath);
  }

  private async baseline(): Promise<OtaState['baseline']> {
    const h = await this.health();
    return { linkOpen: h?.link.state === 'open', uploadConnected: h?.upload.state === 'connected' };
  }

  /** The new version runs and is at least as healthy as the old one was, within the deadline. */
  private async check(version: string): Promise<void> {
    const base = this.state.baseline ?? { linkOpen: false, uploadConnected: false };
    const deadline = Date.now() + this.o.healthDeadlineMs;
    let why = 'the agent did not answer';
    while (Date.now() < deadline) {
      const h = await this.health();
      if (h) {
        if (h.agentVersion !== version) why = `the agent runs version ${h.agentVersion}, not ${version}`;
        else if (h.spool.state !== 'open') why = `spool ${h.spool.state}`;
        else if (base.linkOpen && (h.link.state !== 'open' || h.protocol.frames === 0))
          why = `serial link ${h.link.state} (it was open before)`;
        else if (base.uploadConnected && h.upload.state !== 'connected') why = `upload ${h.upload.state} (it was connected before)`;
        else return;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new OtaError('unhealthy', `not healthy within ${Math.round(this.o.healthDeadlineMs / 1000)} s: ${why}`);
  }
}

function replaceSymlink(path: string, target: string): void {
  const tmp = `${path}.new-${process.pid}`;
  rmSync(tmp, { force: true });
  symlinkSync(target, tmp);
  renameSync(tmp, path);
}

function request(url: string, headers: Record<string, string>): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? httpsGet : httpGet;
    const req = get(url, { headers, timeout: 30_000 }, resolve);
    req.on('timeout', () => req.destroy(new OtaError('interrupted', `download ${url}: timed out`)));
    req.on('error', reject);
  });
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (d) => h.update(d))
      .on('end', () => resolve(h.digest('hex')))
      .on('error', reject);
  });
}

/** The spool's schema version, or null when there is no spool yet. */
export function spoolSchema(dataDir: string): number | null {
  const file = join(dataDir, 'spool.db');
  if (!existsSync(file)) return null;
  const db = new SqliteDatabase(file, { readonly: true, fileMustExist: true });
  try {
    return db.pragma('user_version', { simple: true }) as number;
  } finally {
    db.close();
  }
}

export { SCHEMA_VERSION };
