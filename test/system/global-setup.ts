import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildConsoleImage } from './helpers/image.js';
import { unmountOverlay, WORK } from './helpers/overlay.js';

/**
 * The system tests need root (mounts, nspawn, qemu) and the console image;
 * the image is built here once per run (its Debian base comes from the cache
 * after the first build). Missing tools are an error, never a skip.
 */
export default function setup(): void {
  if (process.getuid?.() !== 0) throw new Error('the system tests need root (overlay mounts, systemd-nspawn, qemu)');
  for (const [tool, pkg] of [
    ['systemd-nspawn', 'systemd-container'],
    ['debootstrap', 'debootstrap'],
    ['qemu-system-x86_64', 'qemu-system-x86'],
    ['mkfs.ext4', 'e2fsprogs'],
    ['socat', 'socat'],
    ['mosquitto', 'mosquitto'],
    // cross.test.ts: the ARM bundles' addons are cross-built, then run under qemu-user.
    ['aarch64-linux-gnu-g++', 'g++-aarch64-linux-gnu'],
    ['arm-linux-gnueabihf-g++', 'g++-arm-linux-gnueabihf'],
    ['qemu-aarch64-static', 'qemu-user-static'],
  ]) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0)
      throw new Error(`the system tests need ${tool} (apt-get install ${pkg})`);
  }
  // The previous run's folders (kept for a post-mortem until now): unmounted, removed.
  if (existsSync(WORK)) {
    for (const d of readdirSync(WORK)) {
      unmountOverlay(join(WORK, d));
      rmSync(join(WORK, d), { recursive: true, force: true });
    }
  }
  // BIKE_SYSTEM_IMAGE already set (a developer re-running one file): use that image as it is.
  if (!process.env.BIKE_SYSTEM_IMAGE) buildConsoleImage();
}
