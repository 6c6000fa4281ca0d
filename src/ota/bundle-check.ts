/**
 * A bundle checked before it is unpacked in full: its listing (shape and
 * unpacked size), then its signed manifest alone. Whatever fails here has
 * touched nothing outside the staging folder.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { OtaError } from './errors.js';
import { MANIFEST_FILE, SIGNATURE_FILE, type Manifest, type ManifestSignature } from './manifest.js';
import { SignatureError, verifySignature, type TrustedKey } from '../signing/signature.js';

/** Run tar to unpack `members` (all when empty) of the bundle into dir. */
export function untar(tarball: string, dir: string, members: string[]): void {
  const tar = spawnSync('tar', ['-xzf', tarball, '-C', dir, '--no-same-owner', '--no-same-permissions', ...members], { encoding: 'utf8' });
  if (tar.status !== 0) throw new OtaError('bad_bundle', `unpack: ${tar.stderr.trim().slice(0, 500)}`);
}

/**
 * The bundle's listing, before anything is unpacked: every entry under one
 * top folder, which is a directory entry; only regular files, folders and
 * symlinks (no hard links or devices). Returns the bytes it would unpack to.
 */
export function checkListing(tarball: string, top: string): number {
  const list = spawnSync('tar', ['-tzvf', tarball, '--numeric-owner'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (list.status !== 0) throw new OtaError('bad_bundle', `not a readable tar.gz: ${list.stderr.trim().slice(0, 500)}`);
  let total = 0;
  let topIsDir = false;
  for (const line of list.stdout.split('\n')) {
    if (line === '') continue;
    // "-rw-r--r-- 0/0 1234 2026-12-05 12:00 name" (symlinks: "name -> target")
    const m = /^([-dl])\S*\s+\S+\s+(\d+)\s+\S+\s+\S+\s(.*)$/.exec(line);
    if (!m) throw new OtaError('bad_bundle', `the bundle holds an entry that is not a file, folder or symlink: ${line.slice(0, 200)}`);
    const [, type, size, rest] = m;
    const name = type === 'l' ? rest.split(' -> ')[0] : rest;
    if (name === top || name === `${top}/`) {
      if (type !== 'd') throw new OtaError('bad_bundle', `${top} in the bundle is not a folder`);
      topIsDir = true;
      continue;
    }
    if (!name.startsWith(`${top}/`)) throw new OtaError('bad_bundle', `the bundle holds ${name.slice(0, 200)} outside ${top}/`);
    total += Number(size);
  }
  if (!topIsDir) throw new OtaError('bad_bundle', `the bundle does not hold ${top}/`);
  return total;
}

/**
 * The signed manifest alone, checked before the rest of the bundle is
 * unpacked; returns it (its signature verified, its files not yet) so that
 * what it was built for can be judged before unpacking.
 */
export function checkManifestSignature(dir: string, trusted: readonly TrustedKey[]): Manifest {
  try {
    const bytes = readFileSync(join(dir, MANIFEST_FILE));
    const sig = JSON.parse(readFileSync(join(dir, SIGNATURE_FILE), 'utf8')) as ManifestSignature;
    verifySignature(bytes, sig, trusted, MANIFEST_FILE);
    return JSON.parse(bytes.toString('utf8')) as Manifest;
  } catch (err) {
    throw new OtaError(
      'bad_bundle',
      `bundle refused before unpacking: ${err instanceof SignatureError ? err.message : `no readable signed manifest (${(err as Error).message})`}`,
    );
  }
}
