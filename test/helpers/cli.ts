import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/bike-telemetry.js', import.meta.url));

export interface Child {
  proc: ChildProcess;
  stdout: string[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  json: () => Array<Record<string, unknown>>;
}

/** How to start it: this Node and this checkout's bin, unless a test says otherwise (a bundle under qemu-user). */
export interface Launcher {
  command: string;
  /** Before ARGS: the node binary and the bin script, say. */
  args: string[];
}

/** Run `bike-telemetry ARGS`, collecting stdout lines and stderr. */
export function cli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; launcher?: Launcher } = {}): Child {
  // A scratch working directory, so the default dataDir (./data) never lands in the checkout.
  const cwd = opts.cwd ?? mkdtempSync(join(tmpdir(), 'cli-cwd-'));
  const l = opts.launcher ?? { command: process.execPath, args: [BIN] };
  const proc = spawn(l.command, [...l.args, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  const stdout: string[] = [];
  let err = '';
  let partial = '';
  proc.stdout.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop()!;
    stdout.push(...parts);
  });
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => {
      if (partial) stdout.push(partial);
      resolve({ code, signal });
    }),
  );
  return { proc, stdout, stderr: () => err, exited, json: () => stdout.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)) };
}
