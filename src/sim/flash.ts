/**
 * The simulated board's flash, in a file: a metadata area (two copies,
 * written alternately, each with a sequence number and a CRC, so a write cut
 * by power loss leaves the other copy), then two image slots. Erased flash
 * reads 0xFF; programming can only clear bits, as on NOR flash, so a write
 * over a torn one is caught instead of silently mixed. Timing lives in
 * bootloader-board.ts; this is the storage.
 */
import { closeSync, existsSync, openSync, readSync, writeSync, fsyncSync } from 'node:fs';
import { crc32 } from '../protocol/fwp/crc32.js';
import type { FwVersion } from '../protocol/fwp/fwu.js';
import { freshMeta, type FwuFlash, type FwuMeta } from './fwu-receiver.js';

const META_COPY = 2048;
const META_AREA = 2 * META_COPY;

export interface SimFlashOptions {
  slotSize: number;
  sectorSize: number;
  /** The version the factory put in slot 0 when the file is new. */
  factoryVersion: FwVersion;
  /** Slot 0's content when the file is new. */
  factoryImage: Uint8Array;
}

interface StoredMeta {
  seq: number;
  meta: Omit<FwuMeta, 'xfer'> & { xfer: Omit<FwuMeta['xfer'], 'sha256'> & { sha256: string } };
}

export class SimFlash implements FwuFlash {
  readonly slotSize: number;
  readonly sectorSize: number;
  private readonly fd: number;
  private metaSeq = 0;
  readonly meta: FwuMeta;

  constructor(
    readonly path: string,
    o: SimFlashOptions,
  ) {
    this.slotSize = o.slotSize;
    this.sectorSize = o.sectorSize;
    const isNew = !existsSync(path);
    this.fd = openSync(path, isNew ? 'w+' : 'r+');
    if (isNew) {
      const ff = Buffer.alloc(1 << 16, 0xff);
      for (let at = 0; at < META_AREA + 2 * this.slotSize; at += ff.length)
        writeSync(this.fd, ff, 0, Math.min(ff.length, META_AREA + 2 * this.slotSize - at), at);
      this.meta = freshMeta(o.factoryVersion);
      this.program(0, 0, o.factoryImage);
      this.saveMeta(this.meta);
    } else {
      this.meta = this.loadMeta() ?? freshMeta(o.factoryVersion);
    }
  }

  private slotBase(slot: number): number {
    return META_AREA + slot * this.slotSize;
  }

  erase(slot: number, offset: number, len: number): void {
    writeSync(this.fd, Buffer.alloc(len, 0xff), 0, len, this.slotBase(slot) + offset);
  }

  program(slot: number, offset: number, data: Uint8Array): boolean {
    // NOR: a bit goes 1 -> 0 only; what is there is AND-ed with the new data.
    const cur = this.read(slot, offset, data.length);
    const out = Buffer.alloc(data.length);
    for (let i = 0; i < data.length; i++) out[i] = cur[i] & data[i];
    writeSync(this.fd, out, 0, out.length, this.slotBase(slot) + offset);
    return out.equals(Buffer.from(data.buffer, data.byteOffset, data.length));
  }

  read(slot: number, offset: number, len: number): Uint8Array {
    const b = Buffer.alloc(len);
    readSync(this.fd, b, 0, len, this.slotBase(slot) + offset);
    return b;
  }

  saveMeta(meta: FwuMeta): void {
    this.metaSeq++;
    const stored: StoredMeta = {
      seq: this.metaSeq,
      meta: { ...meta, xfer: { ...meta.xfer, sha256: Buffer.from(meta.xfer.sha256).toString('hex') } },
    };
    const json = Buffer.from(JSON.stringify(stored), 'utf8');
    const rec = Buffer.alloc(META_COPY, 0xff);
    rec.writeUInt32LE(json.length, 0);
    json.copy(rec, 4);
    rec.writeUInt32LE(crc32(rec, 0, 4 + json.length), 4 + json.length);
    writeSync(this.fd, rec, 0, rec.length, (this.metaSeq % 2) * META_COPY);
    fsyncSync(this.fd);
  }

  private loadMeta(): FwuMeta | null {
    let best: StoredMeta | null = null;
    for (let copy = 0; copy < 2; copy++) {
      const rec = Buffer.alloc(META_COPY);
      readSync(this.fd, rec, 0, META_COPY, copy * META_COPY);
      const len = rec.readUInt32LE(0);
      if (len === 0 || len > META_COPY - 8 || rec.readUInt32LE(4 + len) !== crc32(rec, 0, 4 + len)) continue;
      const s = JSON.parse(rec.subarray(4, 4 + len).toString('utf8')) as StoredMeta;
      if (!best || s.seq > best.seq) best = s;
    }
    if (!best) return null;
    this.metaSeq = best.seq;
    const m = best.meta;
    return { ...m, xfer: { ...m.xfer, sha256: Buffer.from(m.xfer.sha256, 'hex') } };
  }

  close(): void {
    closeSync(this.fd);
  }
}
