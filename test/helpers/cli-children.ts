/**
 * Agent processes started by a test file, killed after each test whatever
 * happened, with their cleanups (brokers, consumers) run first: the shared
 * set-up of the tests that run `bike-telemetry` as a user would.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { cli, type Child } from './cli.js';

export interface CliChildren {
  /** Start `bike-telemetry ARGS`; killed (SIGKILL) after the test if still running. */
  start: (args: string[]) => Child;
  /** Run after the test, before the children are killed. */
  cleanups: Array<() => Promise<void>>;
}

/** Call once at the top of a test file. */
export function useCliChildren(): CliChildren {
  const children: Child[] = [];
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
    for (const c of children.splice(0)) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
  });
  return {
    start: (args) => {
      const c = cli(args);
      children.push(c);
      return c;
    },
    cleanups,
  };
}

/** Write `value` as JSON to dir/name; the file's path. */
export function writeJson(dir: string, name: string, value: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(value));
  return file;
}
