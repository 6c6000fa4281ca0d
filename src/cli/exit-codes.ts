/** Exit codes of `bike-telemetry`; documented in docs/cli.md. */
export const ExitCode = {
  OK: 0,
  /** A runtime failure (could not start, crashed, a file could not be written). */
  FAILURE: 1,
  /** Wrong command-line usage. */
  USAGE: 2,
  /** The configuration (file, calibration, ride script) is invalid. */
  CONFIG: 3,
  /** `status`: the agent runs but is unhealthy; `selftest`: a check failed. */
  UNHEALTHY: 4,
  /** The command needs the running agent and it is not running. */
  NOT_RUNNING: 5,
  /** What was asked for does not exist (a ride, a spool file). */
  NOT_FOUND: 6,
  /** `board update`: the image or the update was refused (signature, model, downgrade); nothing was sent. */
  REFUSED: 7,
} as const;
