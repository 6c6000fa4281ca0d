/**
 * Structured JSON logs on stdout (journald keeps them). pino writes
 * synchronously to fd 1 here so a crash never loses its last lines.
 */
import { pino, destination, stdTimeFunctions, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, base: Record<string, unknown> = {}): Logger {
  return pino(
    {
      level,
      base: { svc: 'bike-telemetry', ...base },
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label, number) => ({ level: number, lvl: label }) },
    },
    destination({ dest: 1, sync: true }),
  );
}
