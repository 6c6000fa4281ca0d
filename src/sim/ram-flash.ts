/**
 * Flash in memory, NOR rules (erased reads 0xFF, programming only clears
 * bits): the receiver's geometry for the conversation vectors and their
 * tests, where a file (sim/flash.ts) would only slow things down.
 */
import type { FwuFlash } from './fwu-receiver.js';

export class RamFlash implements FwuFlash {
  readonly mem: [Buffer, Buffer];

  constructor(
    readonly slotSize: number,
    readonly sectorSize: number,
  ) {
    this.mem = [Buffer.alloc(slotSize, 0xff), Buffer.alloc(slotSize, 0xff)];
  }

  erase(slot: number, offset: number, len: number): void {
    this.mem[slot].fill(0xff, offset, offset + len);
  }

  program(slot: number, offset: number, data: Uint8Array): boolean {
    const m = this.mem[slot];
    for (let i = 0; i < data.length; i++) m[offset + i] &= data[i];
    return m.subarray(offset, offset + data.length).equals(Buffer.from(data.buffer, data.byteOffset, data.length));
  }

  read(slot: number, offset: number, len: number): Uint8Array {
    return Buffer.from(this.mem[slot].subarray(offset, offset + len));
  }

  /** Nothing to persist: the metadata object is the state. */
  saveMeta(): void {}
}
