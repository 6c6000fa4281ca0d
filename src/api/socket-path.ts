/**
 * Where the agent's API socket is: the configuration's, else systemd's
 * RuntimeDirectory, else /run/bike-telemetry when it exists, else the data
 * folder. One small module so the CLI and the updater find the socket
 * without loading the agent (serialport, SQLite, MQTT).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentConfig } from '../config/schema.js';

export function resolveSocketPath(config: Pick<AgentConfig, 'api' | 'dataDir'>): string {
  if (config.api.socketPath) return config.api.socketPath;
  if (process.env.RUNTIME_DIRECTORY) return join(process.env.RUNTIME_DIRECTORY.split(':')[0], 'api.sock');
  if (existsSync('/run/bike-telemetry')) return '/run/bike-telemetry/api.sock';
  return join(config.dataDir, 'api.sock');
}
