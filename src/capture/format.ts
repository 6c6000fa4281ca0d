/**
 * Capture files: raw serial bytes with timestamps and direction, for
 * `capture` and `replay`.
 *
 *   "BTCAP1\n"  then one JSON header line ({"protocol","baudRate","startedAt","deviceId","source"})
 *   then chunks: u32le milliseconds since start, u8 direction (0 from the board, 1 to it),
 *                u32le length, that many bytes.
 *
 * Anything without the magic is read as a plain byte dump (one chunk, from
 * the board, no timestamps): what `cat /dev/ttyUSB0 > dump` or a logic
 * analyser export gives.
 */
import { AgentError } from '../util/errors.js';
export const CAPTURE_MAGIC = 'BTCAP1\n';

export interface CaptureHeader {
  protocol: string;
  baudRate: number;
  startedAt: string;
  deviceId?: string;
  source: 'agent' | 'port';
}

export interface CaptureChunk {
  /** Milliseconds since the capture started; NaN in a plain dump. */
  tMs: number;
  /** 0: from the board; 1: to the board. */
  dir: number;
  bytes: Buffer;
}

export interface Capture {
  /** null for a plain byte dump. */
  header: CaptureHeader | null;
  chunks: CaptureChunk[];
}

export class CaptureFormatError extends AgentError<'capture_format'> {
  constructor(message: string, options?: ErrorOptions) {
    super('capture_format', message, options);
  }
}

export function encodeHeader(h: CaptureHeader): Buffer {
  return Buffer.from(`${CAPTURE_MAGIC}${JSON.stringify(h)}\n`, 'utf8');
}

export function encodeChunk(tMs: number, dir: number, bytes: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUInt32LE(Math.max(0, Math.min(0xffffffff, Math.round(tMs))), 0);
  head.writeUInt8(dir, 4);
  head.writeUInt32LE(bytes.length, 5);
  return Buffer.concat([head, bytes]);
}

export function parseCapture(file: Buffer): Capture {
  if (file.subarray(0, CAPTURE_MAGIC.length).toString('latin1') !== CAPTURE_MAGIC) {
    return { header: null, chunks: [{ tMs: Number.NaN, dir: 0, bytes: file }] };
  }
  const nl = file.indexOf(0x0a, CAPTURE_MAGIC.length);
  if (nl < 0) throw new CaptureFormatError('capture header line is not terminated');
  let header: CaptureHeader;
  try {
    header = JSON.parse(file.subarray(CAPTURE_MAGIC.length, nl).toString('utf8')) as CaptureHeader;
  } catch (err) {
    throw new CaptureFormatError(`capture header is not JSON: ${(err as Error).message}`);
  }
  const chunks: CaptureChunk[] = [];
  let at = nl + 1;
  while (at < file.length) {
    if (at + 9 > file.length) throw new CaptureFormatError(`capture truncated at byte ${at} (chunk header)`);
    const tMs = file.readUInt32LE(at);
    const dir = file.readUInt8(at + 4);
    const len = file.readUInt32LE(at + 5);
    if (dir > 1) throw new CaptureFormatError(`bad direction ${dir} at byte ${at}`);
    if (at + 9 + len > file.length) throw new CaptureFormatError(`capture truncated at byte ${at} (chunk of ${len} bytes)`);
    chunks.push({ tMs, dir, bytes: file.subarray(at + 9, at + 9 + len) });
    at += 9 + len;
  }
  return { header, chunks };
}
