/**
 * Build a signed release bundle from a built checkout: stage the files the
 * agent needs, prune node_modules to production (the native addons stay,
 * built for this machine's platform and architecture), write and sign the
 * manifest, and pack it as a .tar.gz whose sha256 an update offer names.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SCHEMA_VERSION } from '../spool/schema.js';
import { buildManifest, signBundle, type Manifest } from './manifest.js';

export interface ReleaseOptions {
  /** A built checkout (dist/, node_modules/). */
  repo: string;
  outDir: string;
  privateKeyPem: string;
  keyId: string;
  /** Default: package.json's. */
  version?: string;
}

export interface Release {
  version: string;
  dir: string;
  tarball: string;
  sha256: string;
  size: number;
  manifest: Manifest;
}

/** What goes into a bundle, relative to the checkout. */
const CONTENTS = ['bin', 'dist', 'package.json', 'package-lock.json', 'node_modules', 'firmware-protocol/calibration', 'systemd', 'scripts/install', 'README.md'];

export function buildRelease(o: ReleaseOptions): Release {
  const pkg = JSON.parse(readFileSync(join(o.repo, 'package.json'), 'utf8')) as { version: string };
  const version = o.version ?? pkg.version;
  if (!/^\d+\.\d+\.\d+([.+-][0-9A-Za-z.-]+)?$/.test(version)) throw new Error(`version "${version}" is not x.y.z`);
  for (const need of ['dist/cli/main.js', 'node_modules']) {
    if (!existsSync(join(o.repo, need))) throw new Error(`${join(o.repo, need)} is missing: build the checkout first (npm ci)`);
  }
  const name = `bike-telemetry-${version}`;
  const dir = join(o.outDir, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const c of CONTENTS) {
    const from = join(o.repo, c);
    if (existsSync(from)) cpSync(from, join(dir, c), { recursive: true, verbatimSymlinks: true });
  }
  if (version !== pkg.version) {
    const staged = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, unknown>;
    staged.version = version;
    // The bundle says which version it is; the agent reports it from here.
    writeFileSync(join(dir, 'package.json'), `${JSON.stringify(staged, null, 2)}\n`);
  }
  // Production dependencies only; nothing is fetched (prune only removes).
  const prune = spawnSync('npm', ['prune', '--omit=dev', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: dir, encoding: 'utf8' });
  if (prune.status !== 0) throw new Error(`npm prune failed: ${prune.stderr.trim().split('\n').pop() ?? ''}`);
  const manifest = buildManifest(dir, { version, platform: process.platform, arch: process.arch, spoolSchema: SCHEMA_VERSION, minSpoolSchema: 0 });
  signBundle(dir, manifest, o.privateKeyPem, o.keyId);
  const tarball = join(o.outDir, `${name}-${process.platform}-${process.arch}.tar.gz`);
  const tar = spawnSync('tar', ['-C', o.outDir, '-czf', tarball, name], { encoding: 'utf8' });
  if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr.trim()}`);
  const bytes = readFileSync(tarball);
  return { version, dir, tarball, sha256: createHash('sha256').update(bytes).digest('hex'), size: statSync(tarball).size, manifest };
}
