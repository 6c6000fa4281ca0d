#!/usr/bin/env node
// How quickly the CLI answers a technician: `--help`, and `status` with the
// agent not running and running (against the simulator), each run --runs
// times (default 10); wall time and peak RSS, median and worst, beside an
// empty `node` (the floor) measured the same way. And how long `run` takes
// from its start to "agent started" (the moment it tells systemd READY=1),
// with the unit's Node flags, uploading as installed, no board and no broker. Prints one JSON line.
// Usage: node scripts/bench/cli.js [--runs 10]   (needs `npm run build`)
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { numberArg } from './args.js';
import { startToReady, stopAgent } from './agent-ready.js';
import { timedNode } from './timed-node.js';
import { writeNoBoardConfig } from './no-board-config.js';

const runs = numberArg('--runs', 10);
const bin = fileURLToPath(new URL('../../bin/bike-telemetry.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'bench-cli-'));
const config = join(dir, 'config.json');
writeFileSync(
  config,
  JSON.stringify({
    device: { id: 'bench-cli' },
    dataDir: join(dir, 'data'),
    api: { socketPath: join(dir, 'api.sock') },
    mqtt: { enabled: false },
    log: { records: 'none', statsIntervalS: 0 },
  }),
);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Wall ms and peak RSS MB of `node <args>`, `runs` times. */
function measure(args) {
  const wall = [];
  const rss = [];
  const rssFile = join(dir, 'rss');
  for (let i = 0; i < runs; i++) {
    const t = timedNode(args, rssFile);
    wall.push(t.wallMs);
    rss.push(t.rssMB);
  }
  const r = (x) => Math.round(x * 10) / 10;
  return { wallMs: r(median(wall)), wallMsMax: r(Math.max(...wall)), rssMB: r(median(rss)), rssMBMax: r(Math.max(...rss)) };
}

const floor = measure(['-e', '0']);
const help = measure([bin, '--help']);
const statusDown = measure([bin, 'status', '--config', config]);
/** Wall ms from spawning `run` to its "agent started" line, `runs` times. */
async function runToReady() {
  const cfg = writeNoBoardConfig(join(dir, 'ready.json'), {
    deviceId: 'bench-ready',
    dir,
    dataDir: join(dir, 'ready-data'),
    socketName: 'ready.sock',
  });
  const wall = [];
  for (let i = 0; i < runs; i++) {
    const { p, wallMs } = await startToReady(bin, cfg);
    wall.push(wallMs);
    await stopAgent(p);
  }
  return { wallMs: Math.round(median(wall) * 10) / 10, wallMsMax: Math.round(Math.max(...wall) * 10) / 10 };
}
const ready = await runToReady();

const agent = spawn(process.execPath, [bin, 'run', '--simulate', '--config', config], { stdio: 'ignore' });
const deadline = Date.now() + 15_000;
while (spawnSync(process.execPath, [bin, 'status', '--config', config], { stdio: 'ignore' }).status === 5 && Date.now() < deadline)
  await sleep(200);
const statusUp = measure([bin, 'status', '--config', config]);
agent.kill('SIGTERM');
console.log(
  JSON.stringify({
    bench: 'cli',
    runs,
    node: process.version,
    floor,
    help,
    statusAgentDown: statusDown,
    statusAgentRunning: statusUp,
    runToReady: ready,
  }),
);
