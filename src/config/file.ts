/** Which configuration file a command reads. */
import { existsSync } from 'node:fs';

/** Where the configuration is read from when no -c is given. */
export const SYSTEM_CONFIG_FILE = '/etc/bike-telemetry/config.json';

/** -c FILE, else $BIKE_TELEMETRY_CONFIG, else the system file when it exists, else none (embedded defaults). */
export function resolveConfigFile(file?: string): string | undefined {
  if (file) return file;
  if (process.env.BIKE_TELEMETRY_CONFIG) return process.env.BIKE_TELEMETRY_CONFIG;
  return existsSync(SYSTEM_CONFIG_FILE) ? SYSTEM_CONFIG_FILE : undefined;
}
