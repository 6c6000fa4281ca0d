/**
 * Where the agent's API socket is: the configuration's, else systemd's
 * RuntimeDirectory, else /run/bike-telemetry when it exists, else the data
 * folder. One small module so the CLI and the updater find the socket
 * without loading the agent (serialport, SQLite, MQTT).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** The part of the configuration that says where the socket is (a validated AgentConfig, or config/client-settings.ts's). */
export interface SocketSettings {
  api: { socketPath?: string };
  dataDir: string;
}

export function resolveSocketPath(config: SocketSettings): string {
  if (config.api.socketPath) return config.api.socketPath;
  if (process.env.RUNTIME_DIRECTORY) return join(process.env.RUNTIME_DIRECTORY.split(':')[0], 'api.sock');
  if (existsSync('/run/bike-telemetry')) return '/run/bike-telemetry/api.sock';
  return join(config.dataDir, 'api.sock');
}
