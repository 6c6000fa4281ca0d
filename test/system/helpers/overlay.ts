/**
 * Every machine the system tests boot (container or VM) starts as an overlay
 * of the console image: the image stays as built, each machine keeps its own
 * changes in its folder under WORK.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const WORK = '/var/tmp/bike-system';

/** A fresh `dir` (upper, work, merged) with `lower` mounted read-only beneath; returns the merged root. */
export function mountOverlay(lower: string, dir: string): string {
  unmountOverlay(dir);
  rmSync(dir, { recursive: true, force: true });
  for (const d of ['upper', 'work', 'merged']) mkdirSync(join(dir, d), { recursive: true });
  const merged = join(dir, 'merged');
  const m = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${dir}/upper,workdir=${dir}/work`, merged], {
    encoding: 'utf8',
  });
  if (m.status !== 0) throw new Error(`mount overlay: ${m.stderr}`);
  return merged;
}

export function unmountOverlay(dir: string): void {
  const merged = join(dir, 'merged');
  if (existsSync(merged)) spawnSync('umount', ['-l', merged], { stdio: 'ignore' });
}

/** The agent's configuration in a machine's root, as an installer leaves it (root:bike-telemetry 0640). */
export function writeAgentConfig(root: string, config: Record<string, unknown>): void {
  writeFileSync(join(root, 'etc/bike-telemetry/config.json'), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o640 });
  spawnSync('chroot', [root, 'chown', 'root:bike-telemetry', '/etc/bike-telemetry/config.json']);
}
