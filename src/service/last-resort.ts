/**
 * The last line of defence: an exception or rejection nothing else caught.
 * No remote input should ever get here (every transport and timer handles
 * its own errors); if something does, the process is in an unknown state, so
 * it logs the error with its stack, commits the records it holds where the
 * disk allows, and exits non-zero so systemd starts a clean process.
 */
import type { Logger } from '../log/logger.js';

/** Exit status after an uncaught error (docs/cli.md: 1, runtime failure). */
export const LAST_RESORT_EXIT = 1;

export function installLastResort(
  log: Pick<Logger, 'fatal' | 'error' | 'info'>,
  flush: () => number,
  exit: (code: number) => void = (c) => process.exit(c),
): void {
  let dying = false;
  const die = (kind: 'uncaughtException' | 'unhandledRejection', err: unknown): void => {
    if (dying) {
      // A second fault while flushing: do not loop; the first one was logged.
      exit(LAST_RESORT_EXIT);
      return;
    }
    dying = true;
    log.fatal({ err, kind }, `${kind}: committing held records and exiting for a clean restart`);
    try {
      log.info({ committed: flush() }, 'held records committed');
    } catch (flushErr) {
      log.error({ err: flushErr }, 'records could not be committed before exiting');
    }
    exit(LAST_RESORT_EXIT);
  };
  process.on('uncaughtException', (err) => die('uncaughtException', err));
  process.on('unhandledRejection', (reason) => die('unhandledRejection', reason));
}
