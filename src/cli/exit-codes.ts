/** Exit codes of `bike-telemetry`; documented in the README. */
export const ExitCode = {
  OK: 0,
  /** A runtime failure (could not start, crashed). */
  FAILURE: 1,
  /** Wrong command-line usage. */
  USAGE: 2,
  /** The configuration (file, calibration, ride script) is invalid. */
  CONFIG: 3,
} as const;
