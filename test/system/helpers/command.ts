/** A host command run to completion without blocking the test process's event loop (vitest's worker must keep answering). */
import { spawn } from 'node:child_process';

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  /** Written to its stdin; none: stdin is closed. */
  input?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** SIGKILL after this long (default: never). */
  timeoutMs?: number;
}

export function runCommand(cmd: string, args: string[], o: RunOptions = {}): Promise<RunResult> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(cmd, args, {
      env: o.env ?? process.env,
      cwd: o.cwd,
      stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const timer = o.timeoutMs === undefined ? null : setTimeout(() => p.kill('SIGKILL'), o.timeoutMs);
    const done = (status: number | null, extra = ''): void => {
      if (timer) clearTimeout(timer);
      resolve({ status, stdout, stderr: stderr + extra, ms: Date.now() - t0 });
    };
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', (err) => done(null, err.message));
    p.on('close', (status) => done(status));
    if (p.stdin) {
      // A command that exits without reading (nsenter into a machine going down) must not throw EPIPE here.
      p.stdin.on('error', () => undefined);
      p.stdin.end(o.input);
    }
  });
}
