// Starting and stopping `run` for the start-up benchmarks (cli.js, backlog.js): the agent with
// the unit's Node flags, timed from spawning to its "agent started" line (the moment it tells
// systemd READY=1).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { unitNodeFlags } from './unit-flags.js';

/** Start `bin run --config config`; resolves at "agent started" with the wall ms and the process's peak RSS then. */
export function startToReady(bin, config) {
  const t0 = process.hrtime.bigint();
  const p = spawn(process.execPath, [...unitNodeFlags(), bin, 'run', '--config', config], { stdio: ['ignore', 'pipe', 'ignore'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (d) => {
      out += d;
      if (!out.includes('"msg":"agent started"')) return;
      p.stdout.off('data', onData);
      p.stdout.resume();
      const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
      const peakRssMB = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p.pid}/status`, 'utf8'))[1]) / 1024;
      resolve({ p, wallMs, peakRssMB });
    };
    p.stdout.on('data', onData);
    p.once('exit', (code) => reject(new Error(`agent exited (${code}) before READY`)));
  });
}

/** SIGTERM, and wait for it to exit. */
export async function stopAgent(p) {
  p.removeAllListeners('exit');
  p.kill('SIGTERM');
  await new Promise((r) => (p.exitCode !== null ? r() : p.once('exit', r)));
}
