import { readFileSync } from 'node:fs';
import { ConfigSchema, type AgentConfig } from './schema.js';

/** A configuration problem; the message names the file and the offending key. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function parseConfig(json: unknown, source = 'config'): AgentConfig {
  const r = ConfigSchema.safeParse(json);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const key = i.path.join('.') || '(root)';
    if (i.code === 'unrecognized_keys') {
      const prefix = i.path.length ? `${i.path.join('.')}.` : '';
      return `${i.keys.map((k) => prefix + k).join(', ')}: unknown key`;
    }
    return `${key}: ${i.message}`;
  });
  throw new ConfigError(`${source}: ${lines.join('; ')}`);
}

export function loadConfig(file?: string): AgentConfig {
  if (!file) return parseConfig({}, 'defaults');
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
  return parseConfig(json, file);
}
