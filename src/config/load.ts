import { readFileSync } from 'node:fs';
import { issuesText } from '../util/zod-issues.js';
import { ConfigSchema, type AgentConfig } from './schema.js';
import { dataDirBesideFile } from './defaults.js';
import { ConfigError } from './errors.js';
import { resolveConfigFile, SYSTEM_CONFIG_FILE } from './file.js';

export { ConfigError, resolveConfigFile, SYSTEM_CONFIG_FILE };

export function parseConfig(json: unknown, source = 'config'): AgentConfig {
  const r = ConfigSchema.safeParse(json);
  if (r.success) return r.data;
  throw new ConfigError(`${source}: ${issuesText(r.error)}`);
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
  const fromFile = json && typeof json === 'object' && typeof (json as { dataDir?: unknown }).dataDir === 'string';
  if (fromFile) config.dataDir = dataDirBesideFile(file, config.dataDir);
  return config;
}
