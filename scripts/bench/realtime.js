#!/usr/bin/env node
// The whole `run` process against the simulator (a separate process on a pty)
// at 50 Hz, with the spool and the uploader (to a private Mosquitto) running
// as in production: CPU % of one core, peak RSS and wake-ups a second of the
// agent process, measured from /proc after a warm-up.
//
// Measured four ways in one run, one JSON line:
// - the installed configuration (top-level figures): the Node flags of
//   systemd/bike-telemetry.service's ExecStart and records not logged, as
//   scripts/install writes the configuration; nobody subscribed to the live
//   figures, so the agent reads the board on its heartbeat (SerialLink.setUnwatched);
// - `watched`: the same with a client subscribed to `live` on the API socket
//   (the console app showing the figures): the board read every 100 ms, a line per record;
// - `recordsAll`: the installed run with every record logged (the `run` default), to a pipe;
// - `nodeFloor`: an idle `node` process beside it, the least any Node agent costs.
//
// Usage: node scripts/bench/realtime.js [--seconds 60] [--warmup 5] [--rate 50] [--protocol fwp|peloton]
// (--warmup: seconds after start before measuring; V8 goes on optimising for a minute or two, so a long
// warm-up shows the agent as it runs all day, the default its first minute.)
// (peloton: the simulated original bike answering the agent's polls at 19200 baud; --rate does not apply).
// To attribute the cost: BENCH_RECORDS=all|1hz|none (the installed run's record logging),
// BENCH_NODE_FLAGS="..." (instead of the unit's flags), BENCH_NO_UPLOAD=1,
// BENCH_SYNC=FULL|NORMAL (spool.synchronous), BENCH_COALESCE_MS=N (serial.readCoalesceMs),
// BENCH_CONFIG='{"mqtt":{"pollMs":5000}}' (any configuration, laid over the bench's own),
// BENCH_ONLY_INSTALLED=1 (skip the watched and records-logged runs).
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { startBroker } from './broker.js';
import { numberArg } from './args.js';
import { unitNodeFlags } from './unit-flags.js';

const seconds = numberArg('--seconds', 60);
const rate = numberArg('--rate', 50);
const warmupS = numberArg('--warmup', 5);
const pi = process.argv.indexOf('--protocol');
const protocol = pi > 0 ? process.argv[pi + 1] : 'fwp';
if (protocol !== 'fwp' && protocol !== 'peloton') {
  console.error('--protocol must be fwp or peloton');
  process.exit(2);
}
const bin = fileURLToPath(new URL('../../bin/bike-telemetry.js', import.meta.url));
// Exact CPU time of every thread of the process, in ns, from the scheduler
// (/proc/PID/task/TID/schedstat); /proc/PID/stat's 10 ms ticks over-charge a
// process that wakes briefly many times a second.
const perThread = (pid, read) =>
  readdirSync(`/proc/${pid}/task`).reduce((sum, tid) => {
    try {
      return sum + read(tid);
    } catch {
      return sum; // a thread that just exited
    }
  }, 0);
const cpuNs = (pid) => perThread(pid, (tid) => Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]));
// Wake-ups: voluntary context switches of every thread (each time one went to sleep and was woken).
const wakeups = (pid) =>
  perThread(pid, (tid) => Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))[1]));
const peakRssKb = (pid) => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

/** CPU, wake-ups and peak RSS of `pid` over `seconds`, after the warm-up. */
async function measure(pid, onStart = () => {}) {
  await sleep(warmupS * 1000);
  const c0 = cpuNs(pid);
  const w0 = wakeups(pid);
  const t0 = process.hrtime.bigint();
  onStart();
  await sleep(seconds * 1000);
  const c1 = cpuNs(pid);
  const w1 = wakeups(pid);
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  return {
    elapsed,
    cpuPercent: Number(((100 * (c1 - c0)) / 1e9 / elapsed).toFixed(2)),
    peakRssMB: Number((peakRssKb(pid) / 1024).toFixed(1)),
    wakeupsPerS: Number(((w1 - w0) / elapsed).toFixed(1)),
  };
}

const root = mkdtempSync(join(tmpdir(), 'bench-realtime-'));
const broker = await startBroker();
const sim = spawn(process.execPath, [bin, 'simulate', '--dir', root, '--rate', String(rate), '--protocol', protocol], {
  stdio: ['ignore', 'pipe', 'ignore'],
});
const path = await new Promise((resolve, reject) => {
  sim.stdout.once('data', (d) => resolve(d.toString().trim()));
  sim.once('exit', () => reject(new Error('simulator exited')));
});

/** `over` laid on `base`, section by section (BENCH_CONFIG='{"mqtt":{"pollMs":5000}}'). */
function merged(base, over) {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = v && typeof v === 'object' && !Array.isArray(v) ? merged(base[k] ?? {}, v) : v;
  return out;
}

/** A client of the agent's API socket subscribed to `live` (as the console app is while it shows the figures). */
async function watchLive(socketPath) {
  for (let i = 0; ; i++) {
    const s = await new Promise((resolve) => {
      const c = connect(socketPath, () => resolve(c));
      c.once('error', () => resolve(null));
    });
    if (s) {
      const seen = { lines: 0 };
      s.on('data', (d) => (seen.lines += d.toString().split('\n').length - 1));
      s.write('{"id":1,"method":"subscribe","params":{"streams":["live"]}}\n');
      return { seen, close: () => s.destroy() };
    }
    if (i > 200) throw new Error(`no API socket at ${socketPath}`);
    await sleep(50);
  }
}

/** One agent run with this record logging and these Node flags, on a fresh data folder; `watched`: a live subscriber. */
async function runAgent(name, records, nodeFlags, watched = false) {
  const dir = join(root, name);
  mkdirSync(dir);
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify(
      merged(
        {
          serial: { path, protocol, ...(process.env.BENCH_COALESCE_MS ? { readCoalesceMs: Number(process.env.BENCH_COALESCE_MS) } : {}) },
          dataDir: dir,
          api: { socketPath: join(dir, 'api.sock') },
          mqtt: { url: broker.url, ...(process.env.BENCH_NO_UPLOAD ? { enabled: false } : {}) },
          ...(process.env.BENCH_SYNC ? { spool: { synchronous: process.env.BENCH_SYNC } } : {}),
          log: { records, statsIntervalS: 60 },
        },
        JSON.parse(process.env.BENCH_CONFIG ?? '{}'),
      ),
    ),
  );
  const agent = spawn(process.execPath, [...nodeFlags, bin, 'run', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'] });
  let lines = 0;
  let partial = '';
  agent.stdout.on('data', (d) => {
    const all = (partial + d.toString()).split('\n');
    partial = all.pop();
    for (const l of all) if (l.includes('"msg":"record"')) lines++;
  });
  const watcher = watched ? await watchLive(join(dir, 'api.sock')) : null;
  let r0 = 0;
  let l0 = 0;
  const m = await measure(agent.pid, () => ((r0 = lines), (l0 = watcher?.seen.lines ?? 0)));
  const recordsPerS = Number(((lines - r0) / m.elapsed).toFixed(2));
  const liveLinesPerS = watcher ? Number(((watcher.seen.lines - l0) / m.elapsed).toFixed(2)) : undefined;
  watcher?.close();
  agent.kill('SIGTERM');
  const exitCode = await new Promise((r) => agent.once('exit', (code) => r(code)));
  return {
    cpuPercent: m.cpuPercent,
    peakRssMB: m.peakRssMB,
    wakeupsPerS: m.wakeupsPerS,
    nodeFlags: nodeFlags.join(' '),
    records,
    recordsPerS,
    ...(watcher ? { liveLinesPerS } : {}),
    agentExitCode: exitCode,
    seconds: Number(m.elapsed.toFixed(1)),
  };
}

// The floor: an idle Node process, measured over the first agent run (it costs nothing to run beside it).
const idle = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
const floorRun = measure(idle.pid);
const nodeFlags = process.env.BENCH_NODE_FLAGS !== undefined ? process.env.BENCH_NODE_FLAGS.split(' ').filter(Boolean) : unitNodeFlags();
const installed = await runAgent('installed', process.env.BENCH_RECORDS ?? 'none', nodeFlags);
const floor = await floorRun;
idle.kill();
const watched = process.env.BENCH_ONLY_INSTALLED ? null : await runAgent('watched', process.env.BENCH_RECORDS ?? 'none', nodeFlags, true);
const recordsAll = process.env.BENCH_ONLY_INSTALLED ? null : await runAgent('records-all', 'all', nodeFlags);
sim.kill('SIGTERM');
broker.stop();
const { seconds: measuredS, ...installedFigures } = installed;
console.log(
  JSON.stringify({
    bench: 'realtime',
    protocol,
    sampleRateHz: protocol === 'peloton' ? null : rate,
    seconds: measuredS,
    ...installedFigures,
    watched: watched && {
      cpuPercent: watched.cpuPercent,
      peakRssMB: watched.peakRssMB,
      wakeupsPerS: watched.wakeupsPerS,
      liveLinesPerS: watched.liveLinesPerS,
      agentExitCode: watched.agentExitCode,
    },
    recordsAll: recordsAll && {
      cpuPercent: recordsAll.cpuPercent,
      peakRssMB: recordsAll.peakRssMB,
      wakeupsPerS: recordsAll.wakeupsPerS,
      recordsPerS: recordsAll.recordsPerS,
      agentExitCode: recordsAll.agentExitCode,
    },
    nodeFloor: { cpuPercent: floor.cpuPercent, peakRssMB: floor.peakRssMB, wakeupsPerS: floor.wakeupsPerS },
    node: process.version,
  }),
);
if ([installed, watched, recordsAll].some((r) => r && r.agentExitCode !== 0)) process.exitCode = 1;
