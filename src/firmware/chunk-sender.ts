/**
 * The image's bytes to the board (SPEC.md 11.5): up to `window` chunks in
 * flight past the board's last acknowledged offset, the next chunk sent as
 * each acknowledgement comes; on a refusal, back to the board's offset; when
 * nothing is acknowledged for a while, or the link goes, it ends with
 * TransferInterrupted so the caller asks the board where it is and starts a
 * new sender from there.
 */
import { AgentError } from '../util/errors.js';
import type { FwpDriver } from '../protocol/fwp/driver.js';
import { MAX_CHUNK_DATA, PROGRESS_STATUS_NAMES, ProgressStatus, type FwResume } from '../protocol/fwp/fwu.js';
import { FirmwareError } from './image.js';

/** A transient end: the board's state says how to go on (a timeout, a reset, a lost link). */
export class TransferInterrupted extends AgentError<'transfer_interrupted'> {
  constructor(message: string, options?: ErrorOptions) {
    super('transfer_interrupted', message, options);
  }
}

/** No FW_PROGRESS for this long while chunks are in flight: ask the board where it is. */
export const STALL_MS = 1200;

export interface ChunkSenderPorts {
  driver: FwpDriver;
  linkOpen(): boolean;
  stopped(): boolean;
  /** Register the FW_PROGRESS listener, or remove it (null). */
  onProgress(listener: ((next: number, status: number, free: number) => void) | null): void;
  lowLatency(on: boolean): void;
}

export interface ChunkSenderEvents {
  /** The board's offset moved (bytes written so far). */
  acked(offset: number): void;
  sent(bytes: number): void;
  /** The board refused a chunk: sent again from its offset. */
  resent(): void;
}

export function sendChunks(image: Uint8Array, resume: FwResume, ports: ChunkSenderPorts, events: ChunkSenderEvents): Promise<void> {
  const size = image.length;
  const chunk = Math.max(1, Math.min(resume.maxChunk, MAX_CHUNK_DATA));
  const windowBytes = Math.max(1, resume.window) * chunk;
  let acked = resume.next;
  let sendPos = resume.next;
  return new Promise<void>((resolve, reject) => {
    let lastProgressMs = Date.now();
    let settled = false;
    const settle = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearInterval(watch);
      ports.onProgress(null);
      ports.lowLatency(false);
      if (err) reject(err);
      else resolve();
    };
    const pump = (): void => {
      while (sendPos < size && sendPos - acked < windowBytes) {
        const len = Math.min(chunk, size - sendPos);
        if (!ports.driver.sendChunk(sendPos, image, sendPos, len)) {
          settle(new TransferInterrupted('link not open'));
          return;
        }
        events.sent(len);
        sendPos += len;
      }
    };
    ports.onProgress((next, status) => {
      lastProgressMs = Date.now();
      if (status === ProgressStatus.OK) {
        if (next > acked) acked = next;
        if (sendPos < acked) sendPos = acked;
        events.acked(acked);
        if (acked >= size) settle();
        else pump();
        return;
      }
      if (status === ProgressStatus.BAD_CHECK || status === ProgressStatus.OUT_OF_ORDER || status === ProgressStatus.BAD_CHUNK) {
        // Go back to where the board is; what was in flight after the gap is dropped by the board.
        events.resent();
        acked = next;
        sendPos = next;
        events.acked(acked);
        pump();
        return;
      }
      if (status === ProgressStatus.FLASH_ERROR)
        settle(new FirmwareError('transfer_failed', `the board could not write its flash at offset ${next}`));
      else settle(new TransferInterrupted(`board: ${PROGRESS_STATUS_NAMES[status] ?? status}`));
    });
    const watch = setInterval(() => {
      if (ports.stopped()) settle(new TransferInterrupted('agent stopping'));
      else if (!ports.linkOpen()) settle(new TransferInterrupted('link lost'));
      else if (Date.now() - lastProgressMs > STALL_MS) settle(new TransferInterrupted('no progress from the board'));
    }, 200);
    watch.unref();
    ports.lowLatency(true);
    pump();
  });
}
