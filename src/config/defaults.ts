/**
 * Defaults the schema (schema.ts) and the schema-free reader of a client's
 * settings (client-settings.ts) share, so the two cannot drift apart.
 */
import { dirname, isAbsolute, resolve } from 'node:path';

/** Where versions/, current, previous and the updater's state live. */
export const DEFAULT_OTA_ROOT = '/opt/bike-telemetry';

/** systemd's StateDirectory under the unit, else ./data. */
export function defaultDataDir(): string {
  return process.env.STATE_DIRECTORY ?? './data';
}

/** A relative dataDir in a file means "beside this file", never "wherever the command was started". */
export function dataDirBesideFile(file: string, dataDir: string): string {
  return isAbsolute(dataDir) ? dataDir : resolve(dirname(resolve(file)), dataDir);
}
