/**
 * One agent per data folder. Two agents on the same dataDir would share a
 * spool and fight over the broker's client id; the second one refuses to
 * start. The lock is an abstract Unix socket named after the folder: the
 * kernel releases it when the process dies (no stale lock file after a power
 * cut or kill -9, no pid that a reboot may reuse).
 */
import { AgentError } from '../util/errors.js';
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { resolve } from 'node:path';

export class InstanceLockError extends AgentError<'data_dir_in_use'> {
  constructor(message: string, options?: ErrorOptions) {
    super('data_dir_in_use', message, options);
  }
}

export function lockName(dataDir: string): string {
  let real: string;
  try {
    real = realpathSync(dataDir);
  } catch {
    real = resolve(dataDir);
  }
  return `\0bike-telemetry-${createHash('sha256').update(real).digest('hex').slice(0, 32)}`;
}

/** Take the lock for dataDir, or throw InstanceLockError when another process holds it. */
export function lockDataDir(dataDir: string): Promise<Server> {
  const server = createServer((s) => s.destroy());
  return new Promise((res, rej) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') rej(new InstanceLockError(`${dataDir}: another agent is running on this data folder`));
      else rej(err);
    });
    server.listen(lockName(dataDir), () => {
      server.unref();
      res(server);
    });
  });
}
