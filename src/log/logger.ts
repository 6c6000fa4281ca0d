/**
 * Structured JSON logs on stdout (journald keeps them). pino writes
 * synchronously to fd 1 here so a crash never loses its last lines.
 */
import { pino, destination, stdTimeFunctions, type Logger } from 'pino';
import { RecentLog } from './recent.js';

export type { Logger };
export { RecentLog };

export interface LoggerOptions {
  /** Keeps the last warnings and errors for `status`, the API and the diagnostics page. */
  recent?: RecentLog;
  /** Where the JSON lines go: stdout (default) or a file path. */
  destination?: string;
}

export function createLogger(level: string, base: Record<string, unknown> = {}, opts: LoggerOptions = {}): Logger {
  const recent = opts.recent;
  return pino(
    {
      level,
      base: { svc: 'bike-telemetry', ...base },
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label, number) => ({ level: number, lvl: label }) },
      ...(recent
        ? {
            hooks: {
              logMethod(args: Parameters<Logger['info']>, method: (...a: unknown[]) => void, level: number) {
                if (level >= 40) recent.add(level, args as unknown[]);
                method.apply(this, args);
              },
            },
          }
        : {}),
    },
    destination({ dest: opts.destination ?? 1, sync: true }),
  );
}
