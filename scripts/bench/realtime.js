#!/usr/bin/env node
// The whole `run` process against the simulator (a separate process on a pty)
// at 50 Hz: CPU % of one core and peak RSS of the agent process, measured
// from /proc after a warm-up, with the spool and the uploader (to a private
// Mosquitto) running as in production; records are logged to a pipe.
// Prints one JSON line. Usage: node scripts/bench/realtime.js [--seconds 60] [--rate 50] [--protocol fwp|peloton]
// (peloton: the simulated original bike answering the agent's polls at 19200 baud; --rate does not apply).
// To attribute the cost: BENCH_RECORDS=all|1hz|none (record logging), BENCH_NO_UPLOAD=1,
// BENCH_SYNC=FULL|NORMAL (spool.synchronous), BENCH_COALESCE_MS=N (serial.readCoalesceMs),
// BENCH_NODE_FLAGS="--max-semi-space-size=1 ..." (V8/Node flags for the agent process).
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { startBroker } from './broker.js';
import { numberArg } from './args.js';

const seconds = numberArg('--seconds', 60);
const rate = numberArg('--rate', 50);
const warmupS = 5;
const pi = process.argv.indexOf('--protocol');
const protocol = pi > 0 ? process.argv[pi + 1] : 'fwp';
if (protocol !== 'fwp' && protocol !== 'peloton') {
  console.error('--protocol must be fwp or peloton');
  process.exit(2);
}
const bin = fileURLToPath(new URL('../../bin/bike-telemetry.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'bench-realtime-'));

const broker = await startBroker();
const sim = spawn(process.execPath, [bin, 'simulate', '--dir', dir, '--rate', String(rate), '--protocol', protocol], { stdio: ['ignore', 'pipe', 'ignore'] });
const path = await new Promise((resolve, reject) => {
  sim.stdout.once('data', (d) => resolve(d.toString().trim()));
  sim.once('exit', () => reject(new Error('simulator exited')));
});
const config = join(dir, 'config.json');
writeFileSync(config, JSON.stringify({ serial: { path, protocol, ...(process.env.BENCH_COALESCE_MS ? { readCoalesceMs: Number(process.env.BENCH_COALESCE_MS) } : {}) }, dataDir: dir, mqtt: { url: broker.url, ...(process.env.BENCH_NO_UPLOAD ? { enabled: false } : {}) }, ...(process.env.BENCH_SYNC ? { spool: { synchronous: process.env.BENCH_SYNC } } : {}), log: { records: process.env.BENCH_RECORDS ?? 'all', statsIntervalS: 60 } }));
const nodeFlags = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);
const agent = spawn(process.execPath, [...nodeFlags, bin, 'run', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'] });
let records = 0;
let partial = '';
agent.stdout.on('data', (d) => {
  const lines = (partial + d.toString()).split('\n');
  partial = lines.pop();
  for (const l of lines) if (l.includes('"msg":"record"')) records++;
});

// Exact CPU time of every thread of the process, in ns, from the scheduler
// (/proc/PID/task/TID/schedstat); /proc/PID/stat's 10 ms ticks over-charge a
// process that wakes briefly many times a second.
const cpuNs = (pid) =>
  readdirSync(`/proc/${pid}/task`).reduce((sum, tid) => {
    try {
      return sum + Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      return sum; // a thread that just exited
    }
  }, 0);
// Wake-ups: voluntary context switches of every thread (each time one went to sleep and was woken).
const wakeups = (pid) =>
  readdirSync(`/proc/${pid}/task`).reduce((sum, tid) => {
    try {
      return sum + Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))[1]);
    } catch {
      return sum;
    }
  }, 0);
const status = (pid, key) => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`${key}:\\s+(\\d+)`))[1]);

await sleep(warmupS * 1000);
const c0 = cpuNs(agent.pid);
const w0 = wakeups(agent.pid);
const r0 = records;
const t0 = process.hrtime.bigint();
await sleep(seconds * 1000);
const c1 = cpuNs(agent.pid);
const w1 = wakeups(agent.pid);
const t1 = process.hrtime.bigint();
const peakRssKb = status(agent.pid, 'VmHWM');
const r1 = records;
agent.kill('SIGTERM');
sim.kill('SIGTERM');
broker.stop();
const exitCode = await new Promise((r) => agent.once('exit', (code) => r(code)));
const elapsed = Number(t1 - t0) / 1e9;
console.log(
  JSON.stringify({
    bench: 'realtime',
    protocol,
    sampleRateHz: protocol === 'peloton' ? null : rate,
    seconds: Number(elapsed.toFixed(1)),
    cpuPercent: Number(((100 * (c1 - c0)) / 1e9 / elapsed).toFixed(2)),
    peakRssMB: Number((peakRssKb / 1024).toFixed(1)),
    wakeupsPerS: Number(((w1 - w0) / elapsed).toFixed(1)),
    nodeFlags: nodeFlags.join(' '),
    records: process.env.BENCH_RECORDS ?? 'all',
    recordsPerS: Number(((r1 - r0) / elapsed).toFixed(2)),
    agentExitCode: exitCode,
    node: process.version,
  }),
);
