/**
 * Native addons in a staged bundle, made right for one target CPU.
 *
 * For this machine's own CPU the checkout's addons (built by `npm ci`) are
 * kept. For another CPU every package with a `binding.gyp` is rebuilt from
 * its sources with the GNU cross toolchain against that CPU's Node.js
 * headers; prebuilt binaries could not be fetched here anyway, and a
 * package's bundled prebuilds are dropped so nothing unbuilt rides along.
 * Either way: prebuilds for other systems, build leftovers and packages
 * published for another CPU (`cpu`/`os` in their package.json) are removed,
 * and each package is checked by ELF header as soon as it is built, so a
 * wrong toolchain fails at the first addon rather than on a bike.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { checkElfFiles } from './elf.js';
import { ReleaseError } from './errors.js';
import type { Target } from './targets.js';

export interface AddonOptions {
  target: Target;
  /** Build from source with the cross toolchain; false: keep the checkout's builds (target = this machine). */
  cross: boolean;
  /** The target's Node.js headers folder (holding include/node), for a cross build. */
  nodeDir?: string;
  /** The target Node's addon ABI: prebuilt addons tagged for another are dropped. */
  nodeAbi: number;
  /** GNU toolchain prefix; default the target's (a test passes another to see the ELF check fail). */
  toolPrefix?: string;
  /** Progress lines (stderr in scripts/release). */
  progress?: (line: string) => void;
}

export interface AddonReport {
  /** Package folder, relative to the bundle. */
  package: string;
  /** checkout: built by npm ci on this machine; prebuilt: binaries published in the package for this CPU; cross-built: from source here. */
  how: 'checkout' | 'prebuilt' | 'cross-built';
  /** The ELF files it now holds (relative to the bundle). */
  files: string[];
}

/** Package folders under node_modules (scoped and nested too). */
function packageDirs(nodeModules: string): string[] {
  const out: string[] = [];
  if (!existsSync(nodeModules)) return out;
  for (const name of readdirSync(nodeModules).sort()) {
    if (name.startsWith('.')) continue;
    const p = join(nodeModules, name);
    if (!statSync(p).isDirectory()) continue;
    const pkgs = name.startsWith('@')
      ? readdirSync(p)
          .sort()
          .map((n) => join(p, n))
      : [p];
    for (const pkg of pkgs) {
      if (!existsSync(join(pkg, 'package.json'))) continue;
      out.push(pkg);
      out.push(...packageDirs(join(pkg, 'node_modules')));
    }
  }
  return out;
}

/** A package published for particular CPUs or systems (npm's `cpu`/`os` fields) that excludes the target. */
function publishedForOthers(pkgDir: string, t: Target): boolean {
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { cpu?: string | string[]; os?: string | string[] };
  const allows = (list: string | string[] | undefined, v: string): boolean => {
    if (list === undefined) return true;
    const l = Array.isArray(list) ? list : [list];
    const deny = l.filter((x) => x.startsWith('!')).map((x) => x.slice(1));
    const allow = l.filter((x) => !x.startsWith('!'));
    return !deny.includes(v) && (allow.length === 0 || allow.includes(v));
  };
  return !allows(pkg.cpu, t.arch) || !allows(pkg.os, t.platform);
}

/** Keep build/Release/*.node (what `bindings` and node-gyp-build load), minus test-only addons. */
function tidyBuild(pkgDir: string): void {
  const build = join(pkgDir, 'build');
  if (!existsSync(build)) return;
  for (const name of readdirSync(build)) {
    if (name !== 'Release') rmSync(join(build, name), { recursive: true, force: true });
  }
  const release = join(build, 'Release');
  if (!existsSync(release)) return;
  for (const name of readdirSync(release)) {
    if (!name.endsWith('.node') || name.startsWith('test_')) rmSync(join(release, name), { recursive: true, force: true });
  }
}

/** prebuilds/<platform>-<archs>/... for the target only. */
function prunePrebuilds(pkgDir: string, t: Target): void {
  const dir = join(pkgDir, 'prebuilds');
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const [platform, archs = ''] = name.split('-');
    if (platform !== t.platform || !archs.split('+').includes(t.arch)) rmSync(join(dir, name), { recursive: true, force: true });
  }
}

/**
 * Prebuilt addons are named by tags (`node.abi137.musl.node`,
 * `bindings-cpp.armv6.glibc.node`): the ones a glibc console with this
 * Node ABI and ARM version would never load are dropped.
 */
function pruneForeignTags(dir: string, t: Target, nodeAbi: number): void {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'node_modules') pruneForeignTags(p, t, nodeAbi);
      continue;
    }
    if (!name.endsWith('.node')) continue;
    const tags = name.split('.');
    const foreign =
      tags.includes('musl') ||
      tags.some((x) => /^abi\d+$/.test(x) && x !== `abi${nodeAbi}`) ||
      (t.name === 'armv7' && tags.some((x) => /^armv(?!7$)\d+$/.test(x)));
    if (foreign) rmSync(p, { force: true });
  }
}

function nodeGypScript(): string {
  const candidates = [process.env.npm_config_node_gyp];
  const prefix = spawnSync('npm', ['prefix', '-g'], { encoding: 'utf8' });
  if (prefix.status === 0) candidates.push(join(prefix.stdout.trim(), 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'));
  candidates.push(join(process.execPath, '../../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'));
  const found = candidates.find((c): c is string => typeof c === 'string' && existsSync(c));
  if (!found) throw new ReleaseError('toolchain_missing', 'node-gyp not found (it comes with npm)');
  return found;
}

/** The toolchain's compilers, or a ReleaseError naming the Debian package to install. */
export function checkToolchain(t: Target, prefix = t.toolPrefix): void {
  for (const tool of ['gcc', 'g++', 'ar']) {
    if (spawnSync(`${prefix}${tool}`, ['--version'], { stdio: 'ignore' }).status !== 0) {
      throw new ReleaseError(
        'toolchain_missing',
        `${prefix}${tool} not found: install ${t.toolPackage} (apt-get install ${t.toolPackage})`,
      );
    }
  }
}

function crossBuild(bundleDir: string, pkgDir: string, o: AddonOptions, gyp: string): void {
  const prefix = o.toolPrefix ?? o.target.toolPrefix;
  // Where the bundle was staged and where the headers are cached must not end up in the binaries
  // (debug info, __FILE__): the same sources give the same bytes wherever they are built.
  const maps = `-ffile-prefix-map=${bundleDir}=/bike-telemetry -ffile-prefix-map=${o.nodeDir}=/node`;
  rmSync(join(pkgDir, 'build'), { recursive: true, force: true });
  rmSync(join(pkgDir, 'prebuilds'), { recursive: true, force: true });
  const env = {
    ...process.env,
    CC: `${prefix}gcc`,
    CXX: `${prefix}g++`,
    LINK: `${prefix}g++`,
    AR: `${prefix}ar`,
    CFLAGS: `${process.env.CFLAGS ?? ''} ${maps}`.trim(),
    CXXFLAGS: `${process.env.CXXFLAGS ?? ''} ${maps}`.trim(),
    // Build against the target's headers only, never a download.
    npm_config_nodedir: o.nodeDir,
  };
  const args = [gyp, 'rebuild', `--arch=${o.target.arch}`, `--nodedir=${o.nodeDir}`, '--jobs=max', '--release'];
  const r = spawnSync(process.execPath, args, { cwd: pkgDir, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    const tail = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-12).join('\n');
    throw new ReleaseError('addon_build_failed', `building ${pkgDir} for ${o.target.name} failed:\n${tail}`);
  }
}

/** Make every native addon under bundleDir right for the target; returns what each package holds. */
export function prepareAddons(bundleDir: string, o: AddonOptions): AddonReport[] {
  const t = o.target;
  if (o.cross) {
    if (!o.nodeDir) throw new ReleaseError('usage', 'a cross build needs the target Node.js headers (nodeDir)');
    checkToolchain(t, o.toolPrefix);
  }
  const gyp = o.cross ? nodeGypScript() : '';
  const reports: AddonReport[] = [];
  for (const pkgDir of packageDirs(join(bundleDir, 'node_modules'))) {
    if (!existsSync(pkgDir)) continue; // inside a package removed just before
    const rel = relative(bundleDir, pkgDir);
    if (publishedForOthers(pkgDir, t)) {
      rmSync(pkgDir, { recursive: true, force: true });
      continue;
    }
    if (!o.cross) pruneForeignTags(pkgDir, t, o.nodeAbi);
    if (!existsSync(join(pkgDir, 'binding.gyp'))) {
      const files = checkElfFiles(pkgDir, t.elf, bundleDir);
      if (files.length > 0) reports.push({ package: rel, how: 'prebuilt', files });
      continue;
    }
    if (o.cross) {
      o.progress?.(`building ${rel} for ${t.name}`);
      crossBuild(bundleDir, pkgDir, o, gyp);
    } else {
      prunePrebuilds(pkgDir, t);
    }
    tidyBuild(pkgDir);
    // Checked here, package by package: a wrong toolchain fails at the first addon.
    const files = checkElfFiles(pkgDir, t.elf, bundleDir);
    // On this machine a package may load its binary from a platform package instead (cbor-extract): reported there.
    if (files.length > 0)
      reports.push({
        package: rel,
        how: o.cross ? 'cross-built' : files.some((f) => f.startsWith(`${rel}/build/`)) ? 'checkout' : 'prebuilt',
        files,
      });
    else if (o.cross) throw new ReleaseError('addon_build_failed', `building ${rel} for ${t.name} produced no addon`);
  }
  return reports;
}
