/**
 * ELF identity of native code in a bundle: every shared object and
 * executable must be for the target CPU, or the bike would find out at the
 * first `require` (after the update, in the field). Reads the first 64 bytes
 * of each file; nothing else is parsed.
 */
import { closeSync, lstatSync, openSync, readdirSync, readSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { ReleaseError } from './errors.js';
import type { ElfIdentity } from './targets.js';

const EM_NAMES: Readonly<Record<number, string>> = {
  3: 'x86',
  8: 'MIPS',
  20: 'PowerPC',
  21: 'PowerPC64',
  40: 'ARM',
  62: 'x86-64',
  183: 'AArch64',
  243: 'RISC-V',
};
const EF_ARM_ABI_FLOAT_HARD = 0x400;
const EF_ARM_ABI_FLOAT_SOFT = 0x200;

export interface ElfHeader {
  bits: 32 | 64;
  littleEndian: boolean;
  machine: number;
  flags: number;
}

/** The header of an ELF file's first bytes, or null when they are not ELF. */
export function parseElfHeader(b: Buffer): ElfHeader | null {
  if (b.length < 52 || b[0] !== 0x7f || b[1] !== 0x45 || b[2] !== 0x4c || b[3] !== 0x46) return null;
  const bits = b[4] === 2 ? 64 : b[4] === 1 ? 32 : null;
  if (bits === null || (bits === 64 && b.length < 64)) return null;
  const littleEndian = b[5] === 1;
  const u16 = (o: number): number => (littleEndian ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (o: number): number => (littleEndian ? b.readUInt32LE(o) : b.readUInt32BE(o));
  return { bits, littleEndian, machine: u16(18), flags: u32(bits === 64 ? 48 : 36) };
}

export function describeElf(h: ElfHeader): string {
  const cpu = EM_NAMES[h.machine] ?? `machine ${h.machine}`;
  const float =
    h.machine === 40
      ? (h.flags & EF_ARM_ABI_FLOAT_HARD) !== 0
        ? ' hard-float'
        : (h.flags & EF_ARM_ABI_FLOAT_SOFT) !== 0
          ? ' soft-float'
          : ''
      : '';
  return `${h.bits}-bit ${cpu}${float}${h.littleEndian ? '' : ' big-endian'}`;
}

export function describeIdentity(want: ElfIdentity): string {
  return `${want.bits}-bit ${EM_NAMES[want.machine] ?? `machine ${want.machine}`}${want.hardFloat ? ' hard-float' : ''}`;
}

/** Null when the header is what `want` says, else what it is instead. */
export function elfMismatch(h: ElfHeader, want: ElfIdentity): string | null {
  const ok =
    h.machine === want.machine &&
    h.bits === want.bits &&
    h.littleEndian &&
    (want.hardFloat === undefined || ((h.flags & EF_ARM_ABI_FLOAT_HARD) !== 0) === want.hardFloat);
  return ok ? null : describeElf(h);
}

function readHead(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(64);
    const n = readSync(fd, b, 0, 64, 0);
    return b.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/**
 * Check every ELF file under dir (addons `*.node`, and any executable or
 * shared library a package carries) against `want`. Returns the ELF files
 * checked (paths relative to `relativeTo`); throws ReleaseError `wrong_arch` naming the
 * first file that is for another CPU, and what it is.
 */
export function checkElfFiles(dir: string, want: ElfIdentity, relativeTo = dir): string[] {
  const checked: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && st.size >= 52) {
        const h = parseElfHeader(readHead(p));
        if (!h) continue;
        const rel = relative(relativeTo, p).split(sep).join('/');
        const wrong = elfMismatch(h, want);
        if (wrong) throw new ReleaseError('wrong_arch', `${rel} is ${wrong}, the bundle is for ${describeIdentity(want)}`);
        checked.push(rel);
      }
    }
  };
  walk(dir);
  return checked;
}
