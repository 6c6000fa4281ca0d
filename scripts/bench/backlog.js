#!/usr/bin/env node
// The agent on a bike that was offline for days: a spool of --records records
// (default 3,200,000: 89 hours at 10 Hz, about 200 MB, under the default 256 MB
// cap), none acknowledged. Measures, --runs times each (default 5), medians:
// - `run` to "agent started" (READY) with the unit's Node flags, uploading as
//   installed to a broker that is not there, no board; peak RSS at that moment
//   (the start reads the whole file once: SQLite's quick_check);
// - with the agent running: a `health` request on the API socket (what every
//   `status`, stats line and watchdog ping asks for; three, a second after READY), and `status` itself;
// - with the agent stopped: `status` (it summarises the file), wall and peak RSS.
// Prints one JSON line. Usage: node scripts/bench/backlog.js [--records 3200000] [--runs 5]
// (needs `npm run build`; the file is built with SQLite directly in a few seconds)
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Spool } from '../../dist/spool/spool.js';
import { createLogger } from '../../dist/log/logger.js';
import { numberArg } from './args.js';
import { writeNoBoardConfig } from './no-board-config.js';
import { startToReady, stopAgent } from './agent-ready.js';
import { timedNode } from './timed-node.js';

const records = numberArg('--records', 3_200_000);
const runs = numberArg('--runs', 5);
const bin = fileURLToPath(new URL('../../bin/bike-telemetry.js', import.meta.url));
const Database = createRequire(import.meta.url)('better-sqlite3');
const dir = mkdtempSync(join(tmpdir(), 'bench-backlog-'));
const median = (xs) => Math.round([...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] * 10) / 10;

// The agent's own schema, then the records in one statement (what days of 10 Hz commits would leave).
Spool.open({
  dir,
  deviceId: 'bench-backlog',
  maxBytes: 256 << 20,
  synchronous: 'NORMAL',
  memoryRecords: 1000,
  log: createLogger('silent'),
}).close();
const db = new Database(join(dir, 'spool.db'));
db.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${records})
  INSERT INTO records (seq, ride, t_us, wall_ms, cadence_drpm, power_dw, resistance_dpct, flywheel_drpm, speed_ckmh, hr_bpm, distance_dm, energy_j, flags)
  SELECT i, 0, i * 100000, 1765000000000 + i * 100, 800 + i % 50, 1500 + i % 300, 450, 2400 + i % 100, 3000 + i % 200, 120 + i % 40, i, i * 10, 0 FROM n`);
db.pragma('wal_checkpoint(TRUNCATE)');
db.close();
const fileMB = Math.round(statSync(join(dir, 'spool.db')).size / 1048576);

// The backlog stays: the broker is not there.
const config = writeNoBoardConfig(join(dir, 'config.json'), { deviceId: 'bench-backlog', dir, dataDir: dir, socketName: 'api.sock' });

/** Milliseconds from sending a `health` request on the API socket to its answer. */
function healthMs() {
  return new Promise((resolve, reject) => {
    const s = connect(join(dir, 'api.sock'), () => {
      const t0 = process.hrtime.bigint();
      let buf = '';
      s.on('data', (d) => {
        buf += d;
        // Lines before the answer (a greeting) are skipped: the answer carries the request's id.
        if (!buf.split('\n').some((l) => l.startsWith('{') && l.includes('"id":1'))) return;
        resolve(Number(process.hrtime.bigint() - t0) / 1e6);
        s.destroy();
      });
      s.write('{"id":1,"method":"health"}\n');
    });
    s.once('error', reject);
  });
}

/** Wall ms and peak RSS MB of `bike-telemetry status`. */
const status = () => timedNode([bin, 'status', '--config', config], join(dir, 'rss'));

const ready = [];
const health = [];
const up = [];
const down = [];
for (let i = 0; i < runs; i++) {
  const a = await startToReady(bin, config);
  ready.push(a);
  // After the uploader's first connect (it loads the MQTT client on the turn after READY), three requests.
  await sleep(1000);
  for (let j = 0; j < 3; j++) health.push(await healthMs());
  up.push(status());
  await stopAgent(a.p);
  down.push(status());
}
rmSync(dir, { recursive: true, force: true });
console.log(
  JSON.stringify({
    bench: 'backlog',
    records,
    fileMB,
    runs,
    node: process.version,
    runToReady: { wallMs: median(ready.map((r) => r.wallMs)), peakRssMB: median(ready.map((r) => r.peakRssMB)) },
    healthRequestMs: median(health),
    statusAgentRunning: { wallMs: median(up.map((s) => s.wallMs)), rssMB: median(up.map((s) => s.rssMB)) },
    statusAgentDown: { wallMs: median(down.map((s) => s.wallMs)), rssMB: median(down.map((s) => s.rssMB)) },
  }),
);
