/** `bike-telemetry fleet-sim`: the coordinator, or (with --worker) one worker process of it. */
import { fileURLToPath } from 'node:url';
import { mkdtempSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { runFleet, runWorker, type WorkerConfig } from '../fleet/fleet-sim.js';
import { ExitCode } from './exit-codes.js';

export interface FleetSimOptions {
  bikes: number;
  workers?: number;
  seconds: number;
  scenario: 'steady' | 'outage' | 'cold-start';
  outageS: number;
  outageAt: number;
  limitAt?: number;
  limit: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  dir?: string;
  worker?: string;
}

export async function fleetSimCommand(o: FleetSimOptions): Promise<void> {
  if (o.worker) {
    const cfg = JSON.parse(o.worker) as WorkerConfig;
    const w = runWorker(cfg, (t) => process.send?.(t));
    process.on('message', (m) => {
      if (m === 'stop-riding') w.stopRiding();
      else if (m === 'exit') void w.stop().then(() => process.exit(0));
    });
    process.on('disconnect', () => void w.stop().then(() => process.exit(0)));
    return;
  }
  const bin = fileURLToPath(new URL('../../bin/bike-telemetry.js', import.meta.url));
  const result = await runFleet(
    {
      bikes: o.bikes,
      workers: o.workers ?? Math.max(1, cpus().length),
      seconds: o.seconds,
      scenario: o.scenario,
      outageS: o.outageS,
      outageAtS: o.outageAt,
      limitAtS: o.limitAt ?? null,
      limitBytesPerS: o.limit,
      backoffBaseMs: o.backoffBaseMs,
      backoffCapMs: o.backoffCapMs,
      dir: o.dir ?? mkdtempSync(join(tmpdir(), 'fleet-sim-')),
      drainS: 600,
      onSecond: (line) => process.stdout.write(`${JSON.stringify(line)}\n`),
    },
    bin,
  );
  process.stdout.write(`${JSON.stringify({ result })}\n`);
  process.exitCode =
    result.acknowledged === result.received && result.invalid === 0 && result.duplicatesAreWholePackets ? ExitCode.OK : ExitCode.FAILURE;
}
