/**
 * Structured JSON logs on stdout (journald keeps them). pino writes
 * synchronously to fd 1 here so a crash never loses its last lines.
 */
import type * as Pino from 'pino';
import type { Logger } from 'pino';
import { requireCjs } from '../util/require-cjs.js';
import { RecentLog } from './recent.js';

const { pino, destination, stdTimeFunctions } = requireCjs('pino') as typeof Pino;

export type { Logger };
export { RecentLog };

export interface LoggerOptions {
  /** Keeps the last warnings and errors for `status`, the API and the diagnostics page. */
  recent?: RecentLog;
  /** Where the JSON lines go: stdout (default) or a file path. */
  destination?: string;
  /**
   * Prefix each line with its syslog priority (`<3>{...}`), which journald
   * strips and keeps as the entry's PRIORITY, so `journalctl -p warning` works.
   * Default: when stdout is the journal (systemd sets JOURNAL_STREAM).
   */
  journald?: boolean;
}

/** pino level -> syslog priority (journald's PRIORITY). */
function syslogPriority(level: number): number {
  if (level >= 60) return 2; // crit
  if (level >= 50) return 3; // err
  if (level >= 40) return 4; // warning
  if (level >= 30) return 6; // info
  return 7; // debug
}

const LEVEL_AT_START = /^\{"level":(\d+)/;

export function createLogger(level: string, base: Record<string, unknown> = {}, opts: LoggerOptions = {}): Logger {
  const recent = opts.recent;
  const journald = opts.journald ?? (process.env.JOURNAL_STREAM !== undefined && opts.destination === undefined);
  return pino(
    {
      level,
      base: { svc: 'bike-telemetry', ...base },
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label, number) => ({ level: number, lvl: label }) },
      hooks: {
        ...(recent
          ? {
              logMethod(args: Parameters<Logger['info']>, method: (...a: unknown[]) => void, level: number) {
                if (level >= 40) recent.add(level, args);
                method.apply(this, args);
              },
            }
          : {}),
        ...(journald
          ? {
              streamWrite(line: string): string {
                const m = LEVEL_AT_START.exec(line);
                return m ? `<${syslogPriority(Number(m[1]))}>${line}` : line;
              },
            }
          : {}),
      },
    },
    destination({ dest: opts.destination ?? 1, sync: true }),
  );
}
