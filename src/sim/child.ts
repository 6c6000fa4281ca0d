/**
 * The simulated board of `run --simulate`, as a process of its own
 * (`bike-telemetry simulate`) behind a pty. A real board answers while the
 * agent's event loop is busy (a commit, a slow CPU); a simulator inside the
 * agent's process could not, and a held-up agent would find its polls
 * unanswered for a reason no bike has. (A worker thread is not an option:
 * serialport's binding is not safe to use from one.) Where no second
 * process can be started from this one (the ARM bundles run under qemu-user
 * in the system tests, and qemu-user cannot exec another ARM binary), the
 * simulator runs inside the agent, as it used to, and that is logged.
 */
import { AgentError } from '../util/errors.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { loadCalibration } from '../metrics/calibration.js';
import { SimBoard } from './board.js';
import { PelotonSimBoard } from './peloton-board.js';
import { DEMO_RIDE, loadRideScript } from './ride-script.js';
import { SimRunner, type SimulatedBoard } from './runner.js';

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

/**
 * The simulator process did not come up (exec refused, or it exited before
 * giving its pty); code `sim_spawn_failed`. Then it runs inside the agent: a
 * fault of the simulator itself (a bad calibration) shows there again.
 */
export class SimSpawnError extends AgentError<'sim_spawn_failed'> {
  constructor(cause: Error) {
    super('sim_spawn_failed', `the simulator process did not start: ${cause.message}`, { cause });
  }
}

/** A simulated board behind a pty, wherever it runs. */
export interface RunningSimulator {
  /** The agent's end of the pty. */
  readonly path: string;
  /** The ride script's name. */
  readonly script: string;
  /** Where it runs: its own process, or inside the agent. */
  readonly where: 'process' | 'in-process';
  stop(): Promise<void>;
}

/** The simulator in its own process; inside this one where no process can be started (`onFallback` says why). */
export async function startSimulator(o: SimChildOptions, onFallback: (reason: string) => void): Promise<RunningSimulator> {
  const script = o.script ? loadRideScript(o.script) : DEMO_RIDE;
  try {
    const child = await SimChild.start(o);
    return { path: child.path, script: script.name, where: 'process', stop: () => child.stop() };
  } catch (err) {
    if (!(err instanceof SimSpawnError)) throw err;
    onFallback(err.message);
  }
  const calibration = loadCalibration(o.calibration);
  const board: SimulatedBoard =
    o.protocol === 'peloton'
      ? new PelotonSimBoard(calibration, script, { seed: o.seed })
      : new SimBoard(calibration, script, { sampleRateHz: o.sampleRateHz, seed: o.seed });
  const runner = new SimRunner<SimulatedBoard>({ board });
  const path = await runner.startOnPty(undefined, o.baudRate);
  return { path, script: script.name, where: 'in-process', stop: () => runner.stop() };
}
const STOP_DEADLINE_MS = 2000;

export class SimChild {
  private constructor(
    private readonly child: ChildProcess,
    /** The agent's end of the pty. */
    readonly path: string,
  ) {}

  static async start(o: SimChildOptions): Promise<SimChild> {
    const args = [
      'simulate',
      '--with-parent',
      '--protocol',
      o.protocol,
      '--calibration',
      o.calibration,
      '--rate',
      String(o.sampleRateHz),
      '--seed',
      String(o.seed),
      '--baud',
      String(o.baudRate),
    ];
    if (o.script) args.push('--script', o.script);
    // stdin is the lifeline: the simulator exits when it closes, so an agent killed outright leaves none behind.
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const path = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const nl = out.indexOf('\n');
        if (nl >= 0) resolve(out.slice(0, nl).trim());
      });
      child.once('error', (err) => reject(new SimSpawnError(err)));
      // Not only a broken simulator: under qemu-user the exec is refused and /bin/sh tries the binary as a script.
      child.once('exit', (code) =>
        reject(new SimSpawnError(new Error(`simulator exited (${String(code)}) before it was ready: ${stderr.trim().slice(-500)}`))),
      );
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
