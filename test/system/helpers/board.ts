/**
 * The board emulator for the system tests: the project's simulator as its own
 * process (`bike-telemetry simulate`), on a pty whose console end is handed to
 * the container (bound in as /dev/flywheel).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO } from './image.js';

export class PtyBoard {
  private constructor(
    private readonly proc: ChildProcess,
    /** The console end: a /dev/pts node, readable and writable by anyone (the agent's user is the container's). */
    readonly device: string,
  ) {}

  static async start(seed = 7): Promise<PtyBoard> {
    const dir = mkdtempSync(join(tmpdir(), 'bike-board-'));
    const proc = spawn(process.execPath, [join(REPO, 'bin/bike-telemetry.js'), 'simulate', '--dir', dir, '--seed', String(seed)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const link = await new Promise<string>((resolve, reject) => {
      let out = '';
      proc.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0].trim());
      });
      proc.once('exit', (code) => reject(new Error(`simulator exited ${code}: ${err}`)));
    });
    const device = realpathSync(link);
    chmodSync(device, 0o666);
    return new PtyBoard(proc, device);
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    this.proc.kill('SIGTERM');
    await new Promise((r) => this.proc.once('exit', r));
  }
}
