/**
 * Bytes to a serial port now: one non-blocking write on the port's fd, as
 * PolledReader reads, when nothing is queued before them. Through
 * serialport's stream a write goes to libuv's threadpool and its completion
 * comes back on the event loop, and only then does the next write start: a
 * process held up (a slow commit, a busy CPU, a pool busy with other work)
 * can hold bytes there while a deadline runs, so a request reaches the bike
 * late and is counted unanswered, or a simulated board's reply reaches the
 * console after its poll period. The stream still takes what the fd will not
 * (would block, a partial write) and everything after it, in order; a copy,
 * since callers reuse their buffers. Nothing is allocated when the fd takes
 * it all.
 */
import { writeSync } from 'node:fs';
import type { Writable } from 'node:stream';

/** A serialport stream: its binding holds the fd once the port is open. */
export interface DirectWritable extends Writable {
  readonly port?: unknown;
}

export function writeDirect(port: DirectWritable, bytes: Buffer): void {
  const fd = (port.port as { fd?: number | null } | undefined)?.fd;
  let written = 0;
  if (typeof fd === 'number' && port.writableLength === 0) {
    try {
      written = writeSync(fd, bytes);
    } catch {
      // EAGAIN (the tty's buffer is full) or the device going away: the stream writes it, or reports the loss.
    }
    if (written === bytes.length) return;
  }
  port.write(Buffer.from(bytes.subarray(written)));
}
