/** `bike-telemetry ports`: the serial ports present, their USB ids, and which one the config names. */
import { existsSync, realpathSync } from 'node:fs';
import type * as Serial from 'serialport';
import { requireCjs } from '../util/require-cjs.js';
import { loadConfig } from '../config/load.js';
import { ApiClient } from '../api/client.js';
import { AgentNotRunningError } from '../api/errors.js';
import { ExitCode } from './exit-codes.js';
import { json, out, table } from './format.js';

const { SerialPort } = requireCjs('serialport') as typeof Serial;
type SerialPort = Serial.SerialPort;

export interface PortsOptions {
  config?: string;
  socket?: string;
  json?: boolean;
}

export interface PortEntry {
  path: string;
  manufacturer: string | null;
  vendorId: string | null;
  productId: string | null;
  serialNumber: string | null;
  configured: boolean;
}

/** The path the running agent has open, when it runs (with --simulate it differs from the config). */
async function agentPath(config: ReturnType<typeof loadConfig>, socket?: string): Promise<string | null> {
  try {
    const c = await ApiClient.forConfig(config, socket, 1000);
    try {
      return (await c.request('health')).link.path;
    } finally {
      c.close();
    }
  } catch (err) {
    if (err instanceof AgentNotRunningError) return null;
    throw err;
  }
}

export async function portsCommand(opts: PortsOptions): Promise<void> {
  const config = loadConfig(opts.config);
  const inUse = await agentPath(config, opts.socket);
  const configuredPath = inUse ?? config.serial.path;
  const exists = existsSync(configuredPath);
  let real: string | null = null;
  try {
    real = exists ? realpathSync(configuredPath) : null;
  } catch {
    real = null;
  }
  // The port list comes from udev (serialport runs udevadm): without it, say
  // so and still answer for the configured path, which is what a technician asks.
  let listed: Awaited<ReturnType<typeof SerialPort.list>> = [];
  let listError: string | null = null;
  try {
    listed = await SerialPort.list();
  } catch (err) {
    listError = `cannot list serial ports (${(err as Error).message}): is udev installed?`;
  }
  const ports: PortEntry[] = listed.map((p) => ({
    path: p.path,
    manufacturer: p.manufacturer ?? null,
    vendorId: p.vendorId ?? null,
    productId: p.productId ?? null,
    serialNumber: p.serialNumber ?? null,
    configured: p.path === configuredPath || p.path === real,
  }));
  const configured = {
    path: configuredPath,
    exists,
    resolvesTo: real,
    listed: ports.some((p) => p.configured),
    agentRunning: inUse !== null,
  };
  if (opts.json) json({ configured, ports, ...(listError ? { listError } : {}) });
  else {
    if (listError) out(listError);
    else if (ports.length === 0) out('No serial ports found (USB adapters and on-board UARTs are listed; pseudo-terminals are not).');
    else {
      out(
        table([
          ['PATH', 'USB ID', 'MANUFACTURER', 'SERIAL', ''],
          ...ports.map((p) => [
            p.path,
            p.vendorId ? `${p.vendorId}:${p.productId ?? '????'}` : '–',
            p.manufacturer ?? '–',
            p.serialNumber ?? '–',
            p.configured ? '← configured (serial.path)' : '',
          ]),
        ]),
      );
    }
    out('');
    if (inUse)
      out(`The running agent has ${inUse} open${inUse !== config.serial.path ? ` (the configuration names ${config.serial.path})` : ''}.`);
    const what = inUse ? 'Serial device' : 'Configured serial.path';
    if (!exists) out(`${what} ${configuredPath} does not exist: is the board plugged in, and does the udev rule name it?`);
    else if (!configured.listed)
      out(
        `${what} ${configuredPath}${real !== configuredPath ? ` -> ${real}` : ''} exists (not a listed USB/UART port: a pty or another device).`,
      );
    else out(`${what} ${configuredPath}${real !== configuredPath ? ` -> ${real}` : ''} is present.`);
  }
  process.exitCode = exists ? ExitCode.OK : ExitCode.NOT_FOUND;
}
