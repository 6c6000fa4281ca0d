/**
 * Run a bundle for another CPU on this machine: the target's official
 * Node.js binary under qemu-user (qemu-aarch64-static, qemu-arm-static),
 * loading the target's C library from Debian's cross sysroot. Programs the
 * agent starts (socat) are this machine's own and run natively.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { nodeDist } from '../../../src/ota/node-dist.js';
import { TARGETS, type TargetName } from '../../../src/ota/targets.js';

export interface Emulated {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

/** The command line that runs `node <script> ...args` for the target under qemu-user. */
export function emulatedNode(target: TargetName, script: string, args: string[]): Emulated {
  const t = TARGETS[target];
  const node = nodeDist(t).binary;
  return { command: t.qemu.binary, args: [node, script, ...args], env: { ...process.env, QEMU_LD_PREFIX: t.qemu.sysroot } };
}

export interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** `bike-telemetry ...args` from the unpacked bundle, to completion. */
export function runBundleCli(target: TargetName, bundle: string, args: string[], timeoutMs = 120_000): Promise<Ran> {
  return runEmulated(target, join(bundle, 'bin/bike-telemetry.js'), args, timeoutMs);
}

export function runEmulated(target: TargetName, script: string, args: string[], timeoutMs = 120_000): Promise<Ran> {
  const e = emulatedNode(target, script, args);
  return run(e.command, e.args, { env: e.env, timeoutMs });
}

/**
 * A command to completion without blocking the test process's event loop
 * (vitest's worker must keep answering while an emulated run takes seconds,
 * a release build minutes).
 */
export function run(command: string, args: string[], o: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<Ran> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const p = spawn(command, args, { env: o.env ?? process.env, cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), o.timeoutMs ?? 120_000);
    p.once('error', reject);
    p.once('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

/** A long-running `bike-telemetry ...args` (the agent): its output collected, its exit awaited. */
export class EmulatedProcess {
  readonly proc: ChildProcess;
  output = '';
  readonly exited: Promise<number | null>;

  constructor(target: TargetName, bundle: string, args: string[]) {
    const e = emulatedNode(target, join(bundle, 'bin/bike-telemetry.js'), args);
    this.proc = spawn(e.command, e.args, { env: e.env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.proc.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
    this.exited = new Promise((r) => this.proc.once('exit', (code) => r(code)));
  }

  /** Lines of the agent's JSON log with this msg. */
  logged(msg: string): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const line of this.output.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const o = JSON.parse(line) as Record<string, unknown>;
        if (o.msg === msg) out.push(o);
      } catch {
        // a partial line still being written
      }
    }
    return out;
  }

  async stop(timeoutMs = 30_000): Promise<number | null> {
    if (this.proc.exitCode !== null) return this.proc.exitCode;
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }
}
