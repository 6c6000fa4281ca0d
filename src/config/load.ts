import { existsSync, readFileSync } from 'node:fs';
import { issuesText } from '../util/zod-issues.js';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ConfigSchema, type AgentConfig } from './schema.js';

import { ConfigError } from './errors.js';

export { ConfigError };

export function parseConfig(json: unknown, source = 'config'): AgentConfig {
  const r = ConfigSchema.safeParse(json);
  if (r.success) return r.data;
  throw new ConfigError(`${source}: ${issuesText(r.error)}`);
}

/** Where the configuration is read from when no -c is given. */
export const SYSTEM_CONFIG_FILE = '/etc/bike-telemetry/config.json';

/** -c FILE, else $BIKE_TELEMETRY_CONFIG, else the system file when it exists, else none (embedded defaults). */
export function resolveConfigFile(file?: string): string | undefined {
  if (file) return file;
  if (process.env.BIKE_TELEMETRY_CONFIG) return process.env.BIKE_TELEMETRY_CONFIG;
  return existsSync(SYSTEM_CONFIG_FILE) ? SYSTEM_CONFIG_FILE : undefined;
}

/** Command-line settings that override the file's, applied before validation (so defaults that depend on them follow). */
export interface ConfigOverrides {
  serial?: { protocol?: string };
}

function withOverrides(json: unknown, o: ConfigOverrides): unknown {
  if (!o.serial?.protocol || !json || typeof json !== 'object' || Array.isArray(json)) return json;
  const j = json as Record<string, unknown>;
  const serial = j.serial && typeof j.serial === 'object' ? (j.serial as Record<string, unknown>) : {};
  return { ...j, serial: { ...serial, protocol: o.serial.protocol } };
}

export function loadConfig(fileOption?: string, overrides: ConfigOverrides = {}): AgentConfig {
  const file = resolveConfigFile(fileOption);
  if (!file) return parseConfig(withOverrides({}, overrides), 'defaults');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file}: not valid JSON: ${(err as Error).message}`);
  }
  const config = parseConfig(withOverrides(json, overrides), file);
  // A relative dataDir in a file means "beside this file", never "wherever the command was started".
  const fromFile = json && typeof json === 'object' && typeof (json as { dataDir?: unknown }).dataDir === 'string';
  if (fromFile && !isAbsolute(config.dataDir)) config.dataDir = resolve(dirname(resolve(file)), config.dataDir);
  return config;
}
