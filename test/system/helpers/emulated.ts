/**
 * Run a bundle for another CPU on this machine: the target's official
 * Node.js binary under qemu-user (qemu-aarch64-static, qemu-arm-static),
 * loading the target's C library from Debian's cross sysroot. Programs the
 * agent starts (socat) are this machine's own and run natively.
 */
import { join } from 'node:path';
import { nodeDist } from '../../../src/ota/node-dist.js';
import { TARGETS, type TargetName } from '../../../src/ota/targets.js';
import { cli, type Child, type Launcher } from '../../helpers/cli.js';
import { runCommand, type RunResult } from './command.js';

/** The environment qemu-user needs to find the target's shared libraries. */
export const emulatedEnv = (target: TargetName): NodeJS.ProcessEnv => ({ ...process.env, QEMU_LD_PREFIX: TARGETS[target].qemu.sysroot });

/** `node` of the target CPU under qemu-user, ready for a script and its arguments. */
export function emulatedNode(target: TargetName): Launcher {
  return { command: TARGETS[target].qemu.binary, args: [nodeDist(TARGETS[target]).binary] };
}

/** `node <script> ...args` for the target, to completion. */
export function runEmulated(target: TargetName, script: string, args: string[], timeoutMs = 120_000): Promise<RunResult> {
  const n = emulatedNode(target);
  return runCommand(n.command, [...n.args, script, ...args], { env: emulatedEnv(target), timeoutMs });
}

/** `bike-telemetry ...args` from the unpacked bundle, to completion. */
export function runBundleCli(target: TargetName, bundle: string, args: string[], timeoutMs = 120_000): Promise<RunResult> {
  return runEmulated(target, join(bundle, 'bin/bike-telemetry.js'), args, timeoutMs);
}

/** A long-running `bike-telemetry ...args` from the bundle (the agent), as the tests' `cli()` runs this checkout's. */
export function startBundleCli(target: TargetName, bundle: string, args: string[]): Child {
  const n = emulatedNode(target);
  return cli(args, {
    env: emulatedEnv(target),
    launcher: { command: n.command, args: [...n.args, join(bundle, 'bin/bike-telemetry.js')] },
  });
}

/** SIGTERM, then SIGKILL if it has not exited within timeoutMs; its exit code. */
export async function stop(c: Child, timeoutMs = 30_000): Promise<number | null> {
  if (c.proc.exitCode !== null) return c.proc.exitCode;
  c.proc.kill('SIGTERM');
  const t = setTimeout(() => c.proc.kill('SIGKILL'), timeoutMs);
  const { code } = await c.exited;
  clearTimeout(t);
  return code;
}
