/**
 * `bike-telemetry board info | update FILE | image RAW`: the flywheel board's
 * firmware for a technician (through the running agent, which owns the
 * serial port) and for the firmware team's release (signing an image).
 * Exit codes: 0 done, 1 the update failed, 2 usage, 5 agent not running,
 * 6 no such file, 7 the image or update was refused (nothing was sent).
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { AgentHealth } from '../contracts/health.js';
import { loadConfig } from '../config/load.js';
import { ApiClient } from '../api/client.js';
import { ApiRequestError } from '../api/errors.js';
import { ExitCode } from './exit-codes.js';
import { bytes, json, out, table } from './format.js';
import { boardUpdateLine } from './status.js';

/** Matches firmware/agent-wiring.ts UPLOAD_PIECE_BYTES (not imported: the CLI loads no agent module). */
const PIECE = 32 * 1024;
const POLL_MS = 250;
/** How long the CLI waits for an agent that went away (restarting under systemd) before giving up. */
const AGENT_GONE_MS = 60_000;

interface BoardOptions {
  config?: string;
  socket?: string;
  json?: boolean;
}

export async function boardInfoCommand(opts: BoardOptions): Promise<void> {
  const client = await ApiClient.forConfig(loadConfig(opts.config), opts.socket);
  try {
    const info = await client.request('board.info');
    if (opts.json) {
      json(info);
      return;
    }
    const h = info.hello;
    out(
      `Board     model ${h.boardModel ?? '– (fwp 1.0)'} · serial ${h.serial} · hw rev ${h.hwRev} · ${info.bootMode === 'bootloader' ? 'IN ITS BOOTLOADER' : `running ${h.firmware}`}`,
    );
    if ('updatable' in info) {
      out(`Updates   not possible over the link: ${info.reason}`);
      return;
    }
    out(`Slots     ${bytes(info.slotSize)} each · chunks of ${info.maxChunk} B · window ${info.window}`);
    out(table(info.slots.map((s) => ['', `slot ${s.slot}`, s.state, s.version ?? '–', s.active ? 'active (boots by default)' : ''])));
    const t = info.transfer;
    out(`Transfer  ${t ? `${t.state} ${t.version} · ${bytes(t.next)} of ${bytes(t.size)}` : 'none'}`);
  } finally {
    client.close();
  }
}

export async function boardUpdateCommand(file: string, opts: BoardOptions & { detach?: boolean }): Promise<void> {
  let image: Buffer;
  try {
    image = readFileSync(file);
  } catch (err) {
    process.stderr.write(
      `bike-telemetry board update: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`,
    );
    process.exitCode = ExitCode.NOT_FOUND;
    return;
  }
  const config = loadConfig(opts.config);
  const client = await ApiClient.forConfig(config, opts.socket);
  try {
    for (let off = 0; off < image.length || off === 0; off += PIECE) {
      await client.request('board.upload', { offset: off, data: image.subarray(off, off + PIECE).toString('base64') });
      if (image.length === 0) break;
    }
    await client.request('board.update', { sha256: createHash('sha256').update(image).digest('hex') });
  } catch (err) {
    if (err instanceof ApiRequestError && err.code === 'refused') {
      if (opts.json) json({ accepted: false, refused: err.message });
      else process.stderr.write(`bike-telemetry board update: refused, nothing sent to the board: ${err.message}\n`);
      process.exitCode = ExitCode.REFUSED;
      return;
    }
    throw err;
  } finally {
    client.close();
  }
  if (!opts.json) out(`${file}: accepted by the agent; it is sent when the bike is idle`);
  if (opts.detach) {
    if (opts.json) json({ accepted: true });
    return;
  }
  const final = await follow(config, opts);
  if (opts.json) json(final);
  process.exitCode = final?.stage === 'done' ? ExitCode.OK : ExitCode.FAILURE;
}

type UpdateState = NonNullable<AgentHealth['boardUpdate']>;

/** Show progress until the update ends; carries on across agent restarts (up to a minute without one). */
async function follow(config: ReturnType<typeof loadConfig>, opts: BoardOptions): Promise<UpdateState | null> {
  const tty = process.stdout.isTTY === true && !opts.json;
  let last = '';
  /** Percent shown last (off a terminal, a line every 10 %). */
  let lastPct = -10;
  let goneSince = 0;
  for (;;) {
    let u: UpdateState | null;
    try {
      const client = await ApiClient.forConfig(config, opts.socket, 1000);
      try {
        u = (await client.request('health')).boardUpdate;
      } finally {
        client.close();
      }
      goneSince = 0;
    } catch {
      if (goneSince === 0) {
        goneSince = Date.now();
        if (!opts.json) out("the agent went away; waiting for it to come back (the update carries on from the board's state)");
      } else if (Date.now() - goneSince > AGENT_GONE_MS) {
        process.stderr.write('bike-telemetry board update: the agent has not come back for a minute; see: bike-telemetry status\n');
        return null;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
      continue;
    }
    if (u && !opts.json) {
      const line = u.stage === 'transferring' ? `${bar(u.percent)} ${boardUpdateLine(u)}` : boardUpdateLine(u);
      if (tty) process.stdout.write(`\r\x1b[K${line}`);
      else if (line !== last && (u.stage !== 'transferring' || Math.floor(u.percent / 10) !== Math.floor(lastPct / 10))) out(line);
      last = line;
      lastPct = u.stage === 'transferring' ? u.percent : -10;
    }
    if (u && (u.stage === 'done' || u.stage === 'failed')) {
      if (tty) process.stdout.write('\n');
      return u;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

function bar(pct: number): string {
  const n = Math.round(pct / 5);
  return `[${'#'.repeat(n)}${'.'.repeat(20 - n)}]`;
}

export async function boardImageCommand(
  raw: string,
  opts: { model: number; fwVersion: string; key: string; keyId: string; out: string; allowDowngrade?: boolean; notes?: string },
): Promise<void> {
  const { buildImage } = await import('../firmware/image.js');
  const image = readFileSync(raw);
  const file = buildImage(
    image,
    { boardModel: opts.model, version: opts.fwVersion, allowDowngrade: opts.allowDowngrade === true, notes: opts.notes },
    readFileSync(opts.key, 'utf8'),
    opts.keyId,
  );
  writeFileSync(opts.out, file);
  out(`${opts.out}: board model ${opts.model}, version ${opts.fwVersion}, ${bytes(image.length)}, signed by ${opts.keyId}`);
}
