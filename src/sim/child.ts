/**
 * The simulated board of `run --simulate`, as a process of its own
 * (`bike-telemetry simulate`) behind a pty. A real board answers while the
 * agent's event loop is busy (a commit, a slow CPU); a simulator inside the
 * agent's process could not, and a held-up agent would find its polls
 * unanswered for a reason no bike has. (A worker thread is not an option:
 * serialport's binding is not safe to use from one.)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export interface SimChildOptions {
  protocol: 'fwp' | 'peloton';
  /** Calibration model name or file. */
  calibration: string;
  /** A ride script file; null: the demo ride. */
  script: string | null;
  sampleRateHz: number;
  seed: number;
  baudRate: number;
}

const BIN = fileURLToPath(new URL('../../bin/bike-telemetry.js', import.meta.url));
const STOP_DEADLINE_MS = 2000;

export class SimChild {
  private constructor(
    private readonly child: ChildProcess,
    /** The agent's end of the pty. */
    readonly path: string,
  ) {}

  static async start(o: SimChildOptions): Promise<SimChild> {
    const args = ['simulate', '--with-parent', '--protocol', o.protocol, '--calibration', o.calibration, '--rate', String(o.sampleRateHz), '--seed', String(o.seed), '--baud', String(o.baudRate)];
    if (o.script) args.push('--script', o.script);
    // stdin is the lifeline: the simulator exits when it closes, so an agent killed outright leaves none behind.
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const path = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const nl = out.indexOf('\n');
        if (nl >= 0) resolve(out.slice(0, nl).trim());
      });
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`simulator exited (${String(code)}) before it was ready: ${stderr.trim()}`)));
    });
    return new SimChild(child, path);
  }

  /** Stop the simulator (the agent sees the board go away). */
  async stop(): Promise<void> {
    const c = this.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, 'exit');
    c.kill('SIGTERM');
    const deadline = new Promise((r) => setTimeout(r, STOP_DEADLINE_MS).unref());
    if ((await Promise.race([exited.then(() => 'exited'), deadline])) !== 'exited') c.kill('SIGKILL');
  }
}
