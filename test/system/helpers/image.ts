/**
 * The console image the system tests boot: built (or taken from the cache) by
 * scripts/console-image once per run, in the global setup; the workers read
 * its description from the environment.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ConsoleImage {
  /** The installed console's root folder (read-only to the tests: they boot overlays of it). */
  root: string;
  kernel: string;
  initrd: string;
  version: string;
  keyId: string;
}

export const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const ENV = 'BIKE_SYSTEM_IMAGE';

export function buildConsoleImage(): ConsoleImage {
  const r = spawnSync('bash', [`${REPO}/scripts/console-image`], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 30 * 60_000,
  });
  if (r.status !== 0) throw new Error(`scripts/console-image failed (exit ${r.status ?? r.signal})`);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  const image = JSON.parse(line) as ConsoleImage;
  process.env[ENV] = line;
  return image;
}

export function consoleImage(): ConsoleImage {
  const line = process.env[ENV];
  if (!line) throw new Error(`${ENV} is not set: run the system tests with npm run test:system`);
  return JSON.parse(line) as ConsoleImage;
}

/** Where the release key of the image lives (beside its root). */
export function imageKeyFiles(image: ConsoleImage): { privateKeyPem: string; publicKeyPem: string; bundle: string } {
  const dir = image.root.replace(/\/root$/, '');
  return { privateKeyPem: `${dir}/release-key.pem`, publicKeyPem: `${dir}/release-key.pub.pem`, bundle: `${dir}/bundle` };
}
