/**
 * `bike-telemetry selftest`: is this bike ready? Config, calibration, spool
 * (integrity, free disk), serial device (opens, board says hello), broker
 * (connect, publish to a test topic). A pass/fail table; exit 4 when a check fails.
 */
import { accessSync, constants, mkdirSync, statfsSync } from 'node:fs';
import { connectMqtt } from '../upload/mqtt-connect.js';
import type { AgentHealth } from '../contracts/health.js';
import { ConfigError, loadConfig, resolveConfigFile } from '../config/load.js';
import type { AgentConfig } from '../config/schema.js';
import type { LinkState } from '../link/serial-link.js';
import { loadCalibration } from '../metrics/calibration.js';
import { createLogger } from '../log/logger.js';
import { createBoardPipeline } from '../pipeline/board.js';
import { SpoolMissingError, SpoolReader } from '../spool/reader.js';
import { brokerLogin, readTlsFiles, type TlsMaterial } from '../upload/login.js';
import { ApiClient } from '../api/client.js';
import { AgentNotRunningError } from '../api/errors.js';
import { ExitCode } from './exit-codes.js';
import { bytes, json, out, table } from './format.js';

export interface SelftestOptions {
  config?: string;
  socket?: string;
  json?: boolean;
  /** Seconds to wait for the board's hello and the broker. */
  timeout: number;
}

type Result = 'pass' | 'fail' | 'skip';
interface Check {
  name: string;
  result: Result;
  detail: string;
  ms: number;
}

const MIN_FREE_BYTES = 16 * 1024 * 1024;

async function timed(name: string, fn: () => Promise<[Result, string]> | [Result, string]): Promise<Check> {
  const t0 = performance.now();
  try {
    const [result, detail] = await fn();
    return { name, result, detail, ms: Math.round(performance.now() - t0) };
  } catch (err) {
    return { name, result: 'fail', detail: (err as Error).message, ms: Math.round(performance.now() - t0) };
  }
}

export async function selftestCommand(opts: SelftestOptions): Promise<void> {
  const checks: Check[] = [];
  let config: AgentConfig | null = null;
  checks.push(
    await timed('config', () => {
      const file = resolveConfigFile(opts.config);
      try {
        config = loadConfig(opts.config);
      } catch (err) {
        if (err instanceof ConfigError) return ['fail', err.message];
        throw err;
      }
      return ['pass', file ? `${file} is valid` : 'no file: embedded defaults'];
    }),
  );
  if (!config) return finish(checks, opts);
  const cfg: AgentConfig = config;
  checks.push(
    await timed('calibration', () => {
      const c = loadCalibration(cfg.metrics.calibration);
      return ['pass', `${c.model}: ${c.ticksPerRev} ticks/rev`];
    }),
  );

  let agent: ApiClient | null = null;
  try {
    agent = await ApiClient.forConfig(cfg, opts.socket, 1000);
  } catch (err) {
    if (!(err instanceof AgentNotRunningError)) throw err;
  }
  const health = agent ? await agent.request('health').catch(() => null) : null;
  agent?.close();
  checks.push({
    name: 'agent',
    result: 'pass',
    detail: health
      ? `running, ${health.healthy ? 'healthy' : `unhealthy: ${health.problems.join('; ')}`}`
      : 'not running (checks below use the devices directly)',
    ms: 0,
  });

  checks.push(await timed('spool', () => checkSpool(cfg)));
  checks.push(await timed('serial', () => (health ? serialFromAgent(health) : serialDirect(cfg, opts.timeout))));
  checks.push(await timed('broker', () => checkBroker(cfg, opts.timeout)));
  finish(checks, opts);
}

function finish(checks: Check[], opts: SelftestOptions): void {
  const ok = checks.every((c) => c.result !== 'fail');
  if (opts.json) json({ ok, checks });
  else {
    out(table([['CHECK', 'RESULT', 'TIME', 'DETAIL'], ...checks.map((c) => [c.name, c.result.toUpperCase(), `${c.ms} ms`, c.detail])]));
    out('');
    out(
      ok
        ? 'selftest passed'
        : `selftest FAILED: ${checks
            .filter((c) => c.result === 'fail')
            .map((c) => c.name)
            .join(', ')}`,
    );
  }
  process.exitCode = ok ? ExitCode.OK : ExitCode.UNHEALTHY;
}

function checkSpool(cfg: AgentConfig): [Result, string] {
  mkdirSync(cfg.dataDir, { recursive: true });
  accessSync(cfg.dataDir, constants.W_OK);
  const fs = statfsSync(cfg.dataDir);
  const free = fs.bavail * fs.bsize;
  let integrity = 'no spool yet (created at the first start)';
  let used = 0;
  try {
    const r = SpoolReader.open(cfg.dataDir);
    try {
      const check = r.integrity();
      if (check !== 'ok') return ['fail', `integrity check: ${check}`];
      const s = r.summary();
      used = s.bytes;
      integrity = `integrity ok, ${s.records} records, schema ${s.schemaVersion}`;
    } finally {
      r.close();
    }
  } catch (err) {
    if (!(err instanceof SpoolMissingError) || err.code !== 'spool_missing') throw err;
  }
  const need = Math.max(MIN_FREE_BYTES, Math.min(cfg.spool.maxBytes - used, 64 * 1024 * 1024));
  if (free < need) return ['fail', `${integrity}; only ${bytes(free)} free in ${cfg.dataDir}, want ${bytes(need)}`];
  return ['pass', `${integrity}; ${bytes(free)} free`];
}

function serialFromAgent(h: AgentHealth): [Result, string] {
  if (h.link.state !== 'open')
    return ['fail', `agent's link is ${h.link.state}: ${h.link.lastError ?? 'no error recorded'} (${h.link.path})`];
  if (!h.board.hello) return ['fail', `${h.link.path} open but the board has not said hello`];
  return [
    'pass',
    `${h.link.path}: firmware ${h.board.hello.firmware}, serial ${h.board.hello.serial}, ${h.protocol.frames} frames (through the agent)`,
  ];
}

async function serialDirect(cfg: AgentConfig, timeoutS: number): Promise<[Result, string]> {
  // The agent's own pipeline, without the agent: one open attempt, no pacing, silence judged by the check's timeout.
  const { protocol: p, link: l } = createBoardPipeline(cfg, createLogger('silent'), () => {}, {
    reopenBaseMs: 60_000,
    reopenCapMs: 60_000,
    silenceTimeoutMs: timeoutS * 1000,
    readCoalesceMs: 0,
  });
  try {
    return await new Promise<[Result, string]>((resolve) => {
      const deadline = setTimeout(
        () => resolve(['fail', `${cfg.serial.path}: opens, but no answer from the board within ${timeoutS} s (${cfg.serial.protocol})`]),
        timeoutS * 1000,
      );
      const check = setInterval(() => {
        const h = p.health();
        const board = p.board();
        if (board.hello) {
          clearTimeout(deadline);
          clearInterval(check);
          resolve(['pass', `${cfg.serial.path}: firmware ${board.hello.firmware}, serial ${board.hello.serial}`]);
        } else if (p.name === 'peloton' && h.samples >= 3) {
          clearTimeout(deadline);
          clearInterval(check);
          resolve([
            'pass',
            `${cfg.serial.path}: the bike answers polls (${h.samples} values), calibration table: ${'calibration' in board ? board.calibration.source : '?'}`,
          ]);
        }
      }, 50);
      l.on('state', (state: LinkState, detail: { reason?: string }) => {
        if (state === 'waiting') {
          clearTimeout(deadline);
          clearInterval(check);
          resolve(['fail', detail.reason ?? `${cfg.serial.path}: cannot open`]);
        }
      });
      l.on('open', () => p.linkOpened());
      l.start();
    });
  } finally {
    p.linkLost('selftest done');
    await l.stop();
  }
}

async function checkBroker(cfg: AgentConfig, timeoutS: number): Promise<[Result, string]> {
  const m = cfg.mqtt;
  if (!m.enabled) return ['skip', 'mqtt.enabled is false'];
  let tls: TlsMaterial;
  try {
    tls = readTlsFiles(m.tls); // as the uploader reads them: an unreadable file is this check's failure, named
  } catch (err) {
    return ['fail', (err as Error).message];
  }
  // Its own client id: the agent's persistent session must not be taken over.
  const client = connectMqtt(m.url, {
    clientId: `${cfg.device.id}-selftest`,
    ...brokerLogin(cfg),
    protocolVersion: 5,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: timeoutS * 1000,
    writeCache: false, // no 6 MB table of two-byte numbers (see the uploader)
    ...tls,
  });
  const topic = `${m.topicPrefix}/${cfg.device.id}/selftest`;
  try {
    return await new Promise<[Result, string]>((resolve) => {
      const timer = setTimeout(() => resolve(['fail', `${m.url}: no connection within ${timeoutS} s`]), timeoutS * 1000);
      client.on('error', (err) => {
        clearTimeout(timer);
        resolve(['fail', `${m.url}: ${err.message}`]);
      });
      client.once('connect', () => {
        client.publish(topic, JSON.stringify({ selftest: true, at: new Date().toISOString() }), { qos: 1 }, (err) => {
          clearTimeout(timer);
          resolve(
            err
              ? ['fail', `${m.url}: publish to ${topic} refused: ${err.message}`]
              : ['pass', `${m.url}: connected, published to ${topic}, acknowledged`],
          );
        });
      });
    });
  } finally {
    client.end(true);
  }
}
