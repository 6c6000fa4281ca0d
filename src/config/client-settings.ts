/**
 * What a client of the running agent needs from the configuration: where its
 * API socket is, its data folder, and where the updater keeps its state. Read
 * from the file without validating it, so `status` does not load zod and build
 * the whole schema (about as long again as an empty `node` takes to start) to
 * learn one path: the agent validated the same file when it started, and a
 * command that finds no agent there loads the configuration properly
 * (load.ts), which reports whatever is wrong with it.
 */
import { readFileSync } from 'node:fs';
import { dataDirBesideFile, DEFAULT_OTA_ROOT, defaultDataDir } from './defaults.js';
import { resolveConfigFile } from './file.js';

export interface ClientSettings {
  api: { socketPath?: string };
  dataDir: string;
  ota: { root: string };
}

/** The settings, or null when the file cannot be read or is not a JSON object (loadConfig says why). */
export function readClientSettings(fileOption?: string): ClientSettings | null {
  const file = resolveConfigFile(fileOption);
  let json: unknown = {};
  if (file) {
    try {
      json = JSON.parse(readFileSync(file, 'utf8'));
    } catch {
      return null;
    }
  }
  if (!isObject(json)) return null;
  // A value of the wrong type is taken as absent: the schema would refuse it, so no agent runs with it.
  const socketPath = isObject(json.api) ? nonEmpty(json.api.socketPath) : undefined;
  const dataDirInFile = nonEmpty(json.dataDir);
  const otaRoot = isObject(json.ota) ? nonEmpty(json.ota.root) : undefined;
  return {
    api: socketPath === undefined ? {} : { socketPath },
    dataDir: file && dataDirInFile !== undefined ? dataDirBesideFile(file, dataDirInFile) : (dataDirInFile ?? defaultDataDir()),
    ota: { root: otaRoot ?? DEFAULT_OTA_ROOT },
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function nonEmpty(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}
