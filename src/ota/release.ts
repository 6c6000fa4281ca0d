/**
 * Build a signed release bundle from a built checkout for one target CPU:
 * stage the files the agent needs, prune node_modules to production, make
 * the native addons right for the target (this machine's kept, another CPU's
 * cross-built from source: addons.ts), check every ELF file's CPU, write and
 * sign the manifest (platform, arch, Node ABI), and pack a .tar.gz whose
 * sha256 an update offer names. With SOURCE_DATE_EPOCH set the bytes depend
 * on the inputs alone (manifest time, tar order, owners, mtimes, gzip header).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { SCHEMA_VERSION } from '../spool/schema.js';
import { prepareAddons, type AddonReport } from './addons.js';
import { checkElfFiles } from './elf.js';
import { ReleaseError } from './errors.js';
import { buildManifest, signBundle, type Manifest } from './manifest.js';
import { nodeDist } from './node-dist.js';
import { hostTarget, TARGETS, type TargetName } from './targets.js';

export interface ReleaseOptions {
  /** A built checkout (dist/, node_modules/). */
  repo: string;
  outDir: string;
  privateKeyPem: string;
  keyId: string;
  /** Default: package.json's. */
  version?: string;
  /** Default: this machine's CPU. */
  target?: TargetName;
  /** GNU toolchain prefix for a cross build; default the target's (see targets.ts). */
  toolPrefix?: string;
  /** Seconds since 1970 for the manifest's createdAt and the tar's mtimes (SOURCE_DATE_EPOCH); default now. */
  sourceDateEpoch?: number;
  /** Progress lines for a person watching (the addon builds take minutes). */
  progress?: (line: string) => void;
  /** Signed flywheel-board images (.fwimg) to ship in board-firmware/: the agent installs the newest for its board when idle. */
  boardFirmware?: string[];
}

export interface Release {
  version: string;
  dir: string;
  tarball: string;
  sha256: string;
  size: number;
  manifest: Manifest;
  target: TargetName;
  addons: AddonReport[];
}

/** What goes into a bundle, relative to the checkout. */
const CONTENTS = [
  'bin',
  'dist',
  'package.json',
  'package-lock.json',
  'node_modules',
  'firmware-protocol/calibration',
  'systemd',
  'scripts/install',
  'README.md',
];

export function buildRelease(o: ReleaseOptions): Release {
  const pkg = JSON.parse(readFileSync(join(o.repo, 'package.json'), 'utf8')) as { version: string; devOnlyModules?: string[] };
  // Developer tools (benchmarks, fleet-sim, the reference cloud consumer, the contract and docs generators) stay out of a bike's bundle.
  const devOnly = (pkg.devOnlyModules ?? []).map((m) => join(o.repo, m));
  const shipped = (src: string): boolean => !devOnly.some((d) => src === d || src === `${d}.map` || src.startsWith(`${d}/`));
  const version = o.version ?? pkg.version;
  if (!/^\d+\.\d+\.\d+([.+-][0-9A-Za-z.-]+)?$/.test(version)) throw new ReleaseError('usage', `version "${version}" is not x.y.z`);
  for (const need of ['dist/cli/main.js', 'node_modules']) {
    if (!existsSync(join(o.repo, need)))
      throw new ReleaseError('not_built', `${join(o.repo, need)} is missing: build the checkout first (npm ci)`);
  }
  const host = hostTarget();
  const targetName = o.target ?? host;
  if (!targetName) throw new ReleaseError('usage', `this machine (${process.platform}-${process.arch}) is not a target: pass --arch`);
  const target = TARGETS[targetName];
  const cross = targetName !== host;
  const epoch = o.sourceDateEpoch ?? Math.floor(Date.now() / 1000);
  const name = `bike-telemetry-${version}`;
  // One staging folder per target, so that one run can build them all; the tarball's top folder is always <name>.
  const dir = join(o.outDir, `linux-${targetName}`, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const c of CONTENTS) {
    const from = join(o.repo, c);
    if (existsSync(from)) cpSync(from, join(dir, c), { recursive: true, verbatimSymlinks: true, filter: shipped });
  }
  if (o.boardFirmware?.length) {
    mkdirSync(join(dir, 'board-firmware'));
    for (const f of o.boardFirmware) {
      if (!f.endsWith('.fwimg') || !existsSync(f)) throw new ReleaseError('usage', `--board-firmware ${f}: not a .fwimg file`);
      cpSync(f, join(dir, 'board-firmware', basename(f)));
    }
  }
  if (version !== pkg.version) {
    const staged = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, unknown>;
    staged.version = version;
    // The bundle says which version it is; the agent reports it from here.
    writeFileSync(join(dir, 'package.json'), `${JSON.stringify(staged, null, 2)}\n`);
  }
  // Production dependencies only; nothing is fetched (prune only removes).
  const prune = spawnSync('npm', ['prune', '--omit=dev', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: dir, encoding: 'utf8' });
  if (prune.status !== 0) throw new ReleaseError('prune_failed', `npm prune failed: ${prune.stderr.trim().split('\n').pop() ?? ''}`);
  let nodeDir: string | undefined;
  let nodeAbi = Number(process.versions.modules);
  if (cross) {
    o.progress?.(`fetching ${target.node.package}@${target.node.version} (headers)`);
    ({ dir: nodeDir, abi: nodeAbi } = nodeDist(target));
  }
  const addons = prepareAddons(dir, { target, cross, nodeDir, nodeAbi, toolPrefix: o.toolPrefix, progress: o.progress });
  // Every ELF file in the bundle, not only the addons built above.
  checkElfFiles(dir, target.elf);
  const manifest = buildManifest(dir, {
    version,
    platform: target.platform,
    arch: target.arch,
    nodeAbi,
    spoolSchema: SCHEMA_VERSION,
    minSpoolSchema: 0,
    createdAt: new Date(epoch * 1000).toISOString(),
  });
  signBundle(dir, manifest, o.privateKeyPem, o.keyId);
  const tarball = join(o.outDir, `${name}-${target.platform}-${targetName}.tar.gz`);
  packReproducibly(join(o.outDir, `linux-${targetName}`), name, tarball, epoch);
  const bytes = readFileSync(tarball);
  return {
    version,
    dir,
    tarball,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    size: statSync(tarball).size,
    manifest,
    target: targetName,
    addons,
  };
}

/** tar sorted by name, owners 0, mtimes the epoch; gzip without a name or time in its header. */
function packReproducibly(parent: string, name: string, tarball: string, epoch: number): void {
  const plain = tarball.replace(/\.gz$/, '');
  rmSync(plain, { force: true });
  rmSync(tarball, { force: true });
  const tar = spawnSync(
    'tar',
    ['-C', parent, '--sort=name', '--owner=0', '--group=0', '--numeric-owner', `--mtime=@${epoch}`, '-cf', plain, name],
    { encoding: 'utf8' },
  );
  if (tar.status !== 0) throw new ReleaseError('pack_failed', `tar failed: ${tar.stderr.trim()}`);
  const gz = spawnSync('gzip', ['-n', '-6', plain], { encoding: 'utf8' });
  if (gz.status !== 0) throw new ReleaseError('pack_failed', `gzip failed: ${gz.stderr.trim()}`);
}
