/**
 * Raw serial bytes as they cross the link, for a technician (`capture`
 * through the API, streamed) or the cloud (the `capture` command, to a file
 * `replay` reads). One capture at a time; the link's tap costs nothing when
 * no capture runs.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiError } from '../api/hub.js';
import { encodeChunk, encodeHeader, type CaptureHeader } from '../capture/format.js';
import type { SerialLink } from '../link/serial-link.js';
import type { Logger } from '../log/logger.js';
import { errorCode } from '../util/files.js';

/** A capture to file holds its bytes in memory until it ends: 64 MiB at most (115200 baud for 600 s is about 7 MB). */
export const CAPTURE_MAX_BYTES = 64 << 20;

export class LinkCapture {
  private stopCurrent: (() => void) | null = null;

  constructor(
    private readonly link: SerialLink,
    private readonly log: Logger,
  ) {}

  /** Tee raw bytes to `onChunk` for `seconds`; returns a stop function. ApiError busy while one runs. */
  start(seconds: number, onChunk: (tMs: number, dir: number, bytes: Buffer) => void, onEnd: (reason: string) => void): () => void {
    if (this.stopCurrent) throw new ApiError('busy', 'a capture is already running');
    const t0 = performance.now();
    let done = false;
    const stop = (reason: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this.link.setTap(null);
      this.stopCurrent = null;
      this.log.info({ reason }, 'capture ended');
      onEnd(reason);
    };
    const timer = setTimeout(() => stop('done'), seconds * 1000);
    this.link.setTap((bytes, dir) => onChunk(Math.round(performance.now() - t0), dir, Buffer.from(bytes)));
    this.stopCurrent = () => stop('stopped');
    this.log.info({ seconds }, 'capture started');
    return this.stopCurrent;
  }

  stop(): void {
    this.stopCurrent?.();
  }

  /**
   * Capture for `seconds` into `dir` (a capture file `replay` reads). Held in
   * memory (bounded) and written at the end; a write that fails (a full disk)
   * rejects with the reason and leaves no partial file.
   */
  toFile(dir: string, seconds: number, header: CaptureHeader): Promise<{ file: string; bytes: number }> {
    const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}.cap`);
    const parts: Buffer[] = [encodeHeader(header)];
    let bytes = 0;
    let truncated = false;
    return new Promise((resolve, reject) => {
      this.start(
        seconds,
        (tMs, d, b) => {
          if (bytes + b.length > CAPTURE_MAX_BYTES) {
            truncated = true;
            return;
          }
          bytes += b.length;
          parts.push(encodeChunk(tMs, d, b));
        },
        () => {
          try {
            mkdirSync(dir, { recursive: true });
            writeFileSync(file, Buffer.concat(parts));
          } catch (err) {
            rmSync(file, { force: true });
            this.log.warn({ err, file }, 'capture not written');
            reject(new Error(`capture not written (${errorCode(err)}): ${(err as Error).message}`, { cause: err }));
            return;
          }
          if (truncated) this.log.warn({ file, maxBytes: CAPTURE_MAX_BYTES }, 'capture cut at its size limit');
          resolve({ file, bytes });
        },
      );
    });
  }
}
