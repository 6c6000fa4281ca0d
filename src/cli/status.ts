/**
 * `bike-telemetry status`: one screen for a technician, `--json` for
 * scripts. Exit 0 healthy, 4 unhealthy, 5 agent not running (the spool file
 * is still summarised then).
 */
import type { AgentHealth } from '../contracts/health.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readClientSettings } from '../config/client-settings.js';
import { readOtaStateFile, type OtaState } from '../ota/state.js';
import type { SpoolReader } from '../spool/reader.js';
import type { AgentConfig } from '../config/schema.js';
import { ApiClient } from '../api/client.js';
import { AgentNotRunningError } from '../api/errors.js';
import { ExitCode } from './exit-codes.js';
import { withoutOptimisingCompiler } from './command-action.js';
import { ago, bytes, duration, json, num, out, table } from './format.js';

export interface StatusOptions {
  config?: string;
  socket?: string;
  json?: boolean;
}

export async function statusCommand(opts: StatusOptions): Promise<void> {
  // The running agent is asked first, finding it from the file read without
  // validation (client-settings.ts); only when it does not answer is the
  // configuration loaded properly, which reports any fault in it.
  let validated: AgentConfig | undefined;
  const settings = readClientSettings(opts.config) ?? (validated = await loadValidated(opts.config));
  let client: ApiClient;
  try {
    client = await ApiClient.forConfig(settings, opts.socket);
  } catch (err) {
    if (!(err instanceof AgentNotRunningError)) throw err;
    const config = validated ?? (await loadValidated(opts.config));
    let spool: ReturnType<SpoolReader['summary']> | { error: string };
    try {
      // Loaded only when the agent is not there to answer; the reader loads SQLite only when there is a spool file.
      const { SpoolReader: Reader } = await import('../spool/reader.js');
      const r = Reader.open(config.dataDir);
      spool = r.summary();
      r.close();
    } catch (e) {
      spool = { error: (e as Error).message };
    }
    if (opts.json) json({ running: false, healthy: false, error: err.message, spool });
    else {
      out(`AGENT NOT RUNNING: ${err.message}`);
      if ('error' in spool) out(`Spool     ${spool.error}`);
      else
        out(
          `Spool     ${bytes(spool.bytes)} · ${num(spool.records)} records waiting (oldest ${spool.oldestTime ?? '–'}) · ${spool.gaps.length} gaps · ${spool.rides} rides`,
        );
      out('Start it with: systemctl start bike-telemetry (or bike-telemetry run)');
    }
    process.exitCode = ExitCode.NOT_RUNNING;
    return;
  }
  try {
    const h = await client.request('health');
    const update = readOtaState(settings.ota.root);
    if (opts.json) json({ running: true, ...h, update });
    else printStatus(h, update);
    process.exitCode = h.healthy ? ExitCode.OK : ExitCode.UNHEALTHY;
  } finally {
    client.close();
  }
}

/**
 * The configuration, validated (zod and the schema are loaded only here).
 * Asking the running agent optimises nothing; the checks' modules would
 * (command-action.ts).
 */
async function loadValidated(file: string | undefined): Promise<AgentConfig> {
  await withoutOptimisingCompiler();
  const { loadConfig } = await import('../config/load.js');
  return loadConfig(file);
}

function readOtaState(root: string): OtaState | null {
  const file = join(root, 'ota', 'state.json');
  return existsSync(file) ? readOtaStateFile(file) : null;
}

/** One line for a board firmware update's state (status and board update). */
export function boardUpdateLine(u: NonNullable<AgentHealth['boardUpdate']>): string {
  switch (u.stage) {
    case 'waiting-idle':
      return 'waiting for the bike to be idle';
    case 'transferring':
      return `sending ${num(u.percent, 1)} % (${bytes(u.written)} of ${bytes(u.size)}${u.bytesPerS ? ` · ${bytes(u.bytesPerS)}/s` : ''}${u.resumes ? ` · resumed ${u.resumes}×` : ''}${u.retransmits ? ` · ${u.retransmits} resent` : ''})`;
    case 'testing':
      return 'test boot: waiting for the new image to say HELLO';
    case 'done':
      return `done${u.finishedAt ? ` at ${u.finishedAt}` : ''}${u.fromVersion ? ` (was ${u.fromVersion})` : ''}`;
    case 'failed':
      return `FAILED: ${u.error?.message ?? 'unknown'}`;
  }
}

function printStatus(h: AgentHealth, ota: OtaState | null): void {
  const l = h.link;
  const c = l.counters;
  const errors = Object.values(h.protocol.errors).reduce((a, b) => a + b, 0);
  const rows: string[][] = [];
  rows.push([
    'Link',
    `${l.state} ${l.path} since ${ago(l.since)} · ${num(c.framesIn)} frames · ${num(errors)} decode errors · ${num(h.protocol.lostFrames)} lost · opened ${c.opens}×${l.state !== 'open' ? '' : l.reads === 'heartbeat' ? ' · read each second (no live viewer)' : ' · read live'}`,
  ]);
  if (l.lastError) rows.push(['', `last link error: ${l.lastError}`]);
  const hello = h.board.hello;
  const cal = 'calibration' in h.board ? h.board.calibration : null;
  if (cal)
    rows.push([
      'Board',
      `polled bus (peloton) · resistance table ${cal.source === 'bike' ? 'read from the bike' : `DEFAULT (records flagged)${cal.error ? `: ${cal.error}` : ''}`} · ${num(h.protocol.requestTimeouts)} polls unanswered`,
    ]);
  else if (hello?.bootMode === 'bootloader')
    rows.push(['Board', `IN ITS BOOTLOADER (firmware update): no live figures · bootloader ${hello.firmware} · serial ${hello.serial}`]);
  else
    rows.push([
      'Board',
      hello
        ? `firmware ${hello.firmware} · serial ${hello.serial} · hw rev ${hello.hwRev}${hello.boardModel !== null ? ` · model ${hello.boardModel}` : ''} · ${hello.sampleRateHz} Hz`
        : 'no hello received',
    ]);
  const bu = h.boardUpdate;
  if (bu) rows.push(['', `firmware update to ${bu.version}: ${boardUpdateLine(bu)}`]);
  if (h.board.status) {
    const s = h.board.status;
    rows.push([
      '',
      `up ${duration(s.uptimeS)} · ${num(s.temperatureC, 1)} °C · ${num(s.supplyV, 2)} V · faults 0x${s.faults.toString(16)}`,
    ]);
  }
  const sp = h.spool;
  if (sp.state === 'open') {
    rows.push([
      'Spool',
      `${bytes(sp.bytes)} of ${bytes(sp.maxBytes)} · backlog ${num(sp.records)} records${sp.oldestSeq !== null ? ` (seq ${sp.oldestSeq}–${sp.newestSeq})` : ''} · next seq ${sp.nextSeq} · gaps unreported ${sp.unreportedGaps} · schema ${sp.schemaVersion}`,
    ]);
    if (sp.writeFailing)
      rows.push([
        '',
        `${sp.diskFull ? 'DISK FULL' : 'WRITES FAILING'}: ${num(sp.pendingRecords)} newest records held in memory · ${sp.lastWriteError}`,
      ]);
  } else rows.push(['Spool', `UNAVAILABLE: ${sp.error}${sp.heldRecords ? ` · ${num(sp.heldRecords)} newest records held in memory` : ''}`]);
  const u = h.upload;
  if (u.state === 'disabled') rows.push(['Upload', 'disabled (mqtt.enabled is false)']);
  else if (u.state === 'unavailable') rows.push(['Upload', `CANNOT START: ${u.error}`]);
  else {
    rows.push([
      'Upload',
      `${u.state} ${u.url} · MQTT ${u.protocolVersion === 5 ? '5' : '3.1.1'} · ${num(u.counters.recordsAcked)} records acked · ${num(u.counters.packetsAcked)} packets · in flight ${u.inflight}/${u.window} · ${num(u.rateBytesPerS)} B/s`,
    ]);
    if (u.lastError) rows.push(['', `last upload error: ${u.lastError}`]);
  }
  const r = h.ride;
  rows.push([
    'Ride',
    r
      ? `${r.startedBy === 'api' ? 'started by the app' : 'auto'} ${duration(r.durationS)} · ${num(r.distanceM / 1000, 2)} km · avg ${num(r.avgPowerW)} W · ${r.member ? 'member (pseudonymised)' : 'anonymous'}`
      : 'none in progress',
  ]);
  rows.push([
    'API',
    `${h.api.clients} clients · socket ${h.api.socket ?? '–'}${h.api.httpPort ? ` · http://127.0.0.1:${h.api.httpPort}/` : ''} · ${h.api.droppedSlow} slow clients dropped`,
  ]);
  if (ota) {
    const last = ota.last
      ? `last: ${ota.last.result} ${ota.last.version}${ota.last.reason ? ` (${ota.last.reason})` : ''} at ${ota.last.at}`
      : 'no update yet';
    rows.push(['Update', `${ota.phase === 'idle' ? 'idle' : `${ota.phase} ${ota.offer?.version ?? ''}`} · ${last}`]);
  }
  rows.push(['Last error', h.lastError ? `${h.lastError.time} ${h.lastError.level}: ${h.lastError.msg}` : 'none']);
  out(`${h.deviceId} · agent ${h.agentVersion} · ${h.healthy ? 'HEALTHY' : 'UNHEALTHY'}`);
  for (const p of h.problems) out(`  ! ${p}`);
  out(table(rows));
}
