/**
 * A pseudo-terminal pair made by socat: one end for the simulated board, one
 * for the agent, each reachable through a stable symlink. Killing the pair is
 * how the simulator "unplugs" the board; making it again with the same links
 * "replugs" it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export class PtyPair {
  private proc: ChildProcess | null = null;

  constructor(
    readonly boardPath: string,
    readonly consolePath: string,
  ) {}

  static socatAvailable(): boolean {
    return spawnSync('socat', ['-V'], { stdio: 'ignore' }).status === 0;
  }

  get running(): boolean {
    return this.proc !== null;
  }

  async open(timeoutMs = 5000): Promise<void> {
    if (this.proc) return;
    for (const p of [this.boardPath, this.consolePath]) removeStaleLink(p);
    const proc = spawn('socat', [`pty,raw,echo=0,link=${this.boardPath}`, `pty,raw,echo=0,link=${this.consolePath}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    let spawnError: Error | null = null;
    proc.on('error', (err) => (spawnError = err));
    this.proc = proc;
    const deadline = Date.now() + timeoutMs;
    while (!(existsSync(this.boardPath) && existsSync(this.consolePath))) {
      if (spawnError) {
        this.proc = null;
        throw new Error(`cannot start socat (install it: apt-get install socat): ${(spawnError as Error).message}`);
      }
      if (proc.exitCode !== null || Date.now() > deadline) {
        this.proc = null;
        proc.kill('SIGKILL');
        throw new Error(`socat did not create the pty pair: ${stderr.trim() || 'timeout'}`);
      }
      await sleep(10);
    }
  }

  /** Tear the pair down; both ends see the device vanish. */
  async close(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    await Promise.race([exited, sleep(2000)]);
    if (proc.exitCode === null) proc.kill('SIGKILL');
  }
}

function removeStaleLink(path: string): void {
  try {
    if (lstatSync(path).isSymbolicLink()) unlinkSync(path);
  } catch {
    // absent: nothing to remove
  }
}
