import { Agent } from '../agent/agent.js';
import { loadConfig } from '../config/load.js';
import { createLogger, RecentLog, type Logger } from '../log/logger.js';
import { PipelineWatch } from '../service/pipeline-watch.js';
import { SystemdNotifier } from '../service/systemd-notify.js';
import { InstanceLockError, lockDataDir } from '../service/instance-lock.js';
import { installLastResort } from '../service/last-resort.js';
import { recordToJson } from '../metrics/record.js';
import type { RunningSimulator } from '../sim/child.js';

export interface RunOptions {
  config?: string;
  simulate?: boolean;
  records?: 'all' | '1hz' | 'none';
  httpPort?: number;
  protocol?: 'fwp' | 'peloton';
}

/** Stop within this long after SIGTERM even if a stage hangs. */
const SHUTDOWN_DEADLINE_MS = 5000;

export async function runCommand(opts: RunOptions): Promise<void> {
  const config = loadConfig(opts.config, { serial: { protocol: opts.protocol } });
  if (opts.records) config.log.records = opts.records;
  if (opts.httpPort !== undefined) config.api.httpPort = opts.httpPort;
  const recent = new RecentLog();
  const log = createLogger(config.log.level, { deviceId: config.device.id }, { recent });
  let agent: Agent | undefined;
  installLastResort(log, () => agent?.commitHeldRecords() ?? 0);

  let notifier: SystemdNotifier | null = null;
  try {
    notifier = SystemdNotifier.fromEnv();
  } catch (err) {
    log.error({ err }, 'cannot notify systemd');
  }

  // Signal handlers first: a SIGTERM while starting up must also stop cleanly.
  let sim: RunningSimulator | undefined;
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    notifier?.stopping(`stopping on ${signal}`);
    const deadline = setTimeout(() => {
      log.error({ deadlineMs: SHUTDOWN_DEADLINE_MS }, 'shutdown deadline passed; exiting');
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS);
    deadline.unref();
    void (async () => {
      await agent?.stop();
      await sim?.stop();
      log.info({ health: agent?.health().protocol }, 'stopped');
      process.exit(0);
    })();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  if (opts.simulate) {
    // In a process of its own: it answers while the agent is busy, as a real board does.
    const { startSimulator } = await import('../sim/child.js');
    sim = await startSimulator(
      {
        protocol: config.serial.protocol,
        calibration: config.metrics.calibration,
        script: config.simulator.script ?? null,
        sampleRateHz: config.simulator.sampleRateHz,
        seed: config.simulator.seed,
        baudRate: config.serial.baudRate,
      },
      (reason) => log.warn({ reason }, 'simulator runs inside the agent: its own process could not be started'),
    );
    config.serial.path = sim.path;
    log.info({ path: config.serial.path, script: sim.script, protocol: config.serial.protocol, where: sim.where }, 'simulator started');
  }
  if (stopping) return;

  try {
    await lockDataDir(config.dataDir);
  } catch (err) {
    if (!(err instanceof InstanceLockError)) throw err;
    log.error({ err, dataDir: config.dataDir }, 'not starting: another agent is running on this data folder');
    await sim?.stop();
    process.exit(1);
  }

  agent = new Agent(config, log, recent);
  if (config.log.records !== 'none') {
    const every = config.log.records === 'all' ? 1 : 10;
    let n = 0;
    agent.addRecordSink((r) => {
      if (++n % every === 0) log.info({ record: recordToJson(r) }, 'record');
    });
  }
  agent.start({ deferUpload: true });
  await agent.startApi();
  log.info({ serial: config.serial.path, calibration: agent.calibration.model, dataDir: config.dataDir }, 'agent started');
  if (notifier) superviseBySystemd(notifier, agent, log);
  // After READY and the line above have gone out: loading the MQTT client blocks the loop for a while.
  setImmediate(() => agent.startUploading());
}

/**
 * READY once the spool is open and the pipeline runs; then, when systemd set a
 * watchdog, a ping every half period but only while the pipeline is alive: a
 * stuck event loop cannot ping, and a dead pipeline does not, so systemd
 * restarts the agent.
 */
function superviseBySystemd(notifier: SystemdNotifier, agent: Agent, log: Logger): void {
  notifier.ready(agent.statusLine());
  log.info({ notifySocket: notifier.path, watchdogIntervalMs: notifier.watchdogIntervalMs }, 'systemd notified: ready');
  const every = notifier.watchdogIntervalMs;
  if (!every) return;
  // A pipeline is dead after 3 watchdog periods of frames without records, or of no spool commit.
  const watch = new PipelineWatch(every * 6, Math.max(every * 6, 10_000));
  let wasAlive = true;
  const timer = setInterval(() => {
    const v = watch.check(agent.pipelineSnapshot());
    if (v.alive) {
      notifier.watchdog(agent.statusLine());
      if (!wasAlive) log.info('pipeline alive again: watchdog pings resumed');
    } else if (wasAlive) {
      log.error({ reason: v.reason }, 'pipeline dead: withholding watchdog pings so systemd restarts the agent');
      notifier.notify(`STATUS=pipeline dead: ${v.reason ?? ''}`);
    }
    wasAlive = v.alive;
  }, every);
  timer.unref();
}
