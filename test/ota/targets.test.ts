/**
 * Target CPUs: the ELF check that keeps another CPU's native code out of a
 * bundle, and the compatibility judgement the updater and offers use.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkElfFiles, describeElf, elfMismatch, parseElfHeader } from '../../src/ota/elf.js';
import { ReleaseError } from '../../src/ota/errors.js';
import { validateOffer } from '../../src/ota/offer.js';
import { currentRuntime, hostTarget, incompatibility, parseTargets, TARGETS } from '../../src/ota/targets.js';
import { tempDir } from '../helpers/agent.js';
import { keypair, signOffer } from '../helpers/ota.js';

/** A minimal ELF header as a compiler writes it (only the fields the check reads are set). */
function elfHeader(bits: 32 | 64, machine: number, flags = 0): Buffer {
  const b = Buffer.alloc(64);
  b.write('\x7fELF', 0, 'latin1');
  b[4] = bits === 64 ? 2 : 1;
  b[5] = 1; // little-endian
  b[6] = 1;
  b.writeUInt16LE(3, 16); // ET_DYN
  b.writeUInt16LE(machine, 18);
  b.writeUInt32LE(flags, bits === 64 ? 48 : 36);
  return b;
}
const ARMHF = 0x05000400; // EABI5, hard-float
const ARMEL = 0x05000200; // EABI5, soft-float

/** The real addon this checkout loads: better-sqlite3's, built by npm ci for this machine. */
const hostAddon = join(dirname(createRequire(import.meta.url).resolve('better-sqlite3/package.json')), 'build/Release/better_sqlite3.node');

describe('ELF identity', () => {
  it('reads a real addon as this machine CPU, and headers of each target as theirs', () => {
    const host = hostTarget();
    expect(host).not.toBeNull();
    const real = parseElfHeader(readFileSync(hostAddon).subarray(0, 64));
    expect(real).not.toBeNull();
    expect(elfMismatch(real!, TARGETS[host!].elf)).toBeNull();
    expect(describeElf(parseElfHeader(elfHeader(64, 183))!)).toBe('64-bit AArch64');
    expect(describeElf(parseElfHeader(elfHeader(32, 40, ARMHF))!)).toBe('32-bit ARM hard-float');
    expect(elfMismatch(parseElfHeader(elfHeader(64, 183))!, TARGETS.arm64.elf)).toBeNull();
    expect(elfMismatch(parseElfHeader(elfHeader(32, 40, ARMHF))!, TARGETS.armv7.elf)).toBeNull();
    // The wrong CPU, the wrong word size, and armel (soft-float) for an armhf console are all mismatches.
    expect(elfMismatch(parseElfHeader(elfHeader(64, 62))!, TARGETS.arm64.elf)).toBe('64-bit x86-64');
    expect(elfMismatch(parseElfHeader(elfHeader(32, 183))!, TARGETS.arm64.elf)).toBe('32-bit AArch64');
    expect(elfMismatch(parseElfHeader(elfHeader(32, 40, ARMEL))!, TARGETS.armv7.elf)).toBe('32-bit ARM soft-float');
    expect(parseElfHeader(Buffer.from('#!/usr/bin/env node\nconsole.log(1)\n'.padEnd(64)))).toBeNull();
    expect(parseElfHeader(Buffer.alloc(10))).toBeNull();
  });

  it('a bundle holding one addon for another CPU fails the check, naming the file and what it is', () => {
    const dir = tempDir('elf-');
    mkdirSync(join(dir, 'node_modules/good/build/Release'), { recursive: true });
    mkdirSync(join(dir, 'node_modules/bad/build/Release'), { recursive: true });
    writeFileSync(join(dir, 'node_modules/good/build/Release/good.node'), elfHeader(64, 183));
    writeFileSync(join(dir, 'node_modules/good/index.js'), 'module.exports = 1;\n'.padEnd(100));
    expect(checkElfFiles(dir, TARGETS.arm64.elf)).toEqual(['node_modules/good/build/Release/good.node']);
    // This machine's real better-sqlite3 addon, planted in an arm64 bundle.
    copyFileSync(hostAddon, join(dir, 'node_modules/bad/build/Release/better_sqlite3.node'));
    let err: unknown;
    try {
      checkElfFiles(dir, TARGETS.arm64.elf);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ReleaseError);
    expect((err as ReleaseError).code).toBe('wrong_arch');
    expect((err as ReleaseError).message).toBe(
      'node_modules/bad/build/Release/better_sqlite3.node is 64-bit x86-64, the bundle is for 64-bit AArch64',
    );
  });
});

describe('targets and compatibility', () => {
  it('--arch names: one, a list, or all; anything else is refused', () => {
    expect(parseTargets('all')).toEqual(['x64', 'arm64', 'armv7']);
    expect(parseTargets('arm64,armv7,arm64')).toEqual(['arm64', 'armv7']);
    expect(() => parseTargets('armv6')).toThrow(/unknown architecture armv6: use x64, arm64, armv7 or all/);
    expect(() => parseTargets('')).toThrow(/unknown architecture/);
  });

  it('a bundle or offer for another CPU, system or Node ABI is incompatible, saying which; one that does not say is judged on what it says', () => {
    const here = { platform: 'linux', arch: 'x64', nodeAbi: 115 };
    expect(incompatibility({ platform: 'linux', arch: 'x64', nodeAbi: 115 }, here)).toBeNull();
    expect(incompatibility({ platform: 'linux', arch: 'x64' }, here)).toBeNull(); // made before nodeAbi was recorded
    expect(incompatibility({}, here)).toBeNull();
    expect(incompatibility({ platform: 'linux', arch: 'arm64', nodeAbi: 115 }, here)).toBe(
      'built for linux-arm64 (Node ABI 115), this console is linux-x64 (Node ABI 115): another CPU',
    );
    expect(incompatibility({ arch: 'arm', nodeAbi: 127 }, here)).toBe(
      'built for linux-arm (Node ABI 127), this console is linux-x64 (Node ABI 115): another CPU and another Node ABI',
    );
    expect(incompatibility({ nodeAbi: 127 }, here)).toBe(
      'built for linux-x64 (Node ABI 127), this console is linux-x64 (Node ABI 115): another Node ABI',
    );
    expect(incompatibility({ platform: 'darwin', arch: 'x64' }, here)).toBe(
      'built for darwin-x64, this console is linux-x64 (Node ABI 115): another CPU',
    );
  });

  it('validateOffer refuses a signed offer for another CPU before anything is fetched; a matching or silent one passes', () => {
    const key = keypair('2026a');
    const base = {
      id: 'offer-arch-0001',
      deviceClass: 'bike-v1',
      target: '*',
      version: '2.0.0',
      url: 'https://updates.example/bike-telemetry-2.0.0-linux-arm64.tar.gz',
      size: 1000,
      sha256: 'a'.repeat(64),
      expiresAt: '2030-01-01T00:00:00Z',
      allowDowngrade: false,
    };
    const ctx = {
      deviceId: 'bike-1',
      deviceClass: 'bike-v1',
      currentVersion: '1.0.0',
      trustedKeys: [key.trusted],
      nowMs: Date.parse('2029-01-01T00:00:00Z'),
      seen: new Set<string>(),
    };
    const arm = { ...ctx, runtime: { platform: 'linux', arch: 'arm64', nodeAbi: 115 } };
    const x64 = { ...ctx, runtime: { platform: 'linux', arch: 'x64', nodeAbi: 115 } };
    const forArm = signOffer({ ...base, platform: 'linux', arch: 'arm64', nodeAbi: 115 }, key);
    expect(validateOffer(forArm, arm).ok).toBe(true);
    expect(validateOffer(forArm, x64)).toEqual({
      ok: false,
      signed: true,
      offerId: 'offer-arch-0001',
      reason: 'incompatible: built for linux-arm64 (Node ABI 115), this console is linux-x64 (Node ABI 115): another CPU',
    });
    expect(validateOffer(signOffer(base, key), x64).ok).toBe(true);
    // The fields are signed like the rest: changing one breaks the signature.
    const forged = JSON.parse(forArm) as { offer: Record<string, unknown> };
    forged.offer.arch = 'x64';
    expect(validateOffer(JSON.stringify(forged), x64)).toMatchObject({ ok: false, signed: false });
    expect(currentRuntime()).toEqual({ platform: process.platform, arch: process.arch, nodeAbi: Number(process.versions.modules) });
  });
});
