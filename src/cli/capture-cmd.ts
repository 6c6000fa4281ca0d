/**
 * `bike-telemetry capture --out FILE --seconds N`: raw serial bytes with
 * timestamps. Through the running agent when there is one (it owns the port,
 * and its requests show in the capture too); otherwise straight from the port.
 */
import { createWriteStream, readFileSync } from 'node:fs';
import { once } from 'node:events';
import type * as Serial from 'serialport';
import { requireCjs } from '../util/require-cjs.js';
import { loadConfig } from '../config/load.js';
import { recordToJson } from '../metrics/record.js';
import { createLogger } from '../log/logger.js';
import { CaptureFormatError, encodeChunk, encodeHeader, parseCapture } from '../capture/format.js';
import { replayCapture, type ReplayProtocol } from '../capture/replay.js';
import { detectProtocol } from '../protocol/registry.js';
import { ApiClient } from '../api/client.js';
import { AgentNotRunningError } from '../api/errors.js';
import { ExitCode } from './exit-codes.js';
import { duration, json, num, out, table } from './format.js';

const { SerialPort } = requireCjs('serialport') as typeof Serial;
type SerialPort = Serial.SerialPort;

export interface CaptureOptions {
  config?: string;
  socket?: string;
  out: string;
  seconds: number;
  json?: boolean;
}

export async function captureCommand(opts: CaptureOptions): Promise<void> {
  const config = loadConfig(opts.config);
  const file = createWriteStream(opts.out);
  await once(file, 'open');
  const stats = { chunks: 0, bytesFromBoard: 0, bytesToBoard: 0, source: 'agent' as 'agent' | 'port', path: config.serial.path };
  const write = (tMs: number, dir: number, bytes: Buffer): void => {
    stats.chunks++;
    if (dir === 0) stats.bytesFromBoard += bytes.length;
    else stats.bytesToBoard += bytes.length;
    file.write(encodeChunk(tMs, dir, bytes));
  };
  let client: ApiClient | null = null;
  try {
    client = await ApiClient.forConfig(config, opts.socket);
  } catch (err) {
    if (!(err instanceof AgentNotRunningError)) throw err;
  }
  if (!client) stats.source = 'port';
  file.write(
    encodeHeader({
      protocol: config.serial.protocol,
      baudRate: config.serial.baudRate,
      startedAt: new Date().toISOString(),
      deviceId: config.device.id,
      source: stats.source,
    }),
  );
  if (client) {
    const health = await client.request('health');
    stats.path = health.link.path;
    const c = client;
    await new Promise<void>((resolve, reject) => {
      c.onEvent((event, data) => {
        if (event === 'capture') {
          const d = data as { tMs: number; dir: number; b64: string };
          write(d.tMs, d.dir, Buffer.from(d.b64, 'base64'));
        } else if (event === 'capture.end') resolve();
      });
      c.onClose((reason) => reject(new Error(reason)));
      process.once('SIGINT', () => void c.request('capture.stop').catch(() => resolve()));
      c.request('capture.start', { seconds: opts.seconds }).catch(reject);
    });
    client.close();
  } else {
    await captureFromPort(config.serial.path, config.serial.baudRate, opts.seconds, write);
  }
  file.end();
  await once(file, 'finish');
  if (opts.json) json({ file: opts.out, seconds: opts.seconds, ...stats });
  else
    out(
      `${opts.out}: ${num(stats.bytesFromBoard)} bytes from the board, ${num(stats.bytesToBoard)} to it, in ${num(stats.chunks)} chunks over ${opts.seconds} s (${stats.source === 'agent' ? 'through the running agent' : `straight from ${stats.path}`})`,
    );
}

async function captureFromPort(
  path: string,
  baudRate: number,
  seconds: number,
  write: (tMs: number, dir: number, b: Buffer) => void,
): Promise<void> {
  const port = new SerialPort({ path, baudRate, autoOpen: false });
  await new Promise<void>((resolve, reject) =>
    port.open((err) => (err ? reject(new Error(`cannot open ${path}: ${err.message}`)) : resolve())),
  );
  const t0 = performance.now();
  port.on('data', (b: Buffer) => write(performance.now() - t0, 0, b));
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, seconds * 1000);
    process.once('SIGINT', () => (clearTimeout(timer), resolve()));
  });
  await new Promise<void>((resolve) => port.close(() => resolve()));
}

export interface ReplayOptions {
  config?: string;
  protocol?: 'fwp' | 'peloton';
  realtime?: boolean;
  records?: boolean;
  json?: boolean;
  calibration?: string;
}

export async function replayCommand(fileName: string, opts: ReplayOptions): Promise<void> {
  const config = loadConfig(opts.config);
  let bytes: Buffer;
  try {
    bytes = readFileSync(fileName);
  } catch (err) {
    process.stderr.write(`bike-telemetry replay: cannot read ${fileName}: ${(err as Error).message}\n`);
    process.exitCode = ExitCode.NOT_FOUND;
    return;
  }
  let capture;
  try {
    capture = parseCapture(bytes);
  } catch (err) {
    if (!(err instanceof CaptureFormatError)) throw err;
    process.stderr.write(`bike-telemetry replay: ${fileName}: ${err.message}\n`);
    process.exitCode = ExitCode.FAILURE;
    return;
  }
  // The capture says which protocol; a plain dump is recognised by its frames, else the configuration decides.
  const protocol =
    opts.protocol ?? (capture.header?.protocol as ReplayProtocol | undefined) ?? detectProtocol(bytes) ?? config.serial.protocol;
  if (protocol !== 'fwp' && protocol !== 'peloton') {
    process.stderr.write(
      `bike-telemetry replay: ${fileName} was captured with protocol ${String(protocol)}, which replay does not decode\n`,
    );
    process.exitCode = ExitCode.FAILURE;
    return;
  }
  const result = await replayCapture(capture, {
    protocol,
    // The configured calibration belongs to the configured protocol; another protocol's capture gets its own default.
    calibration:
      opts.calibration ??
      (protocol === config.serial.protocol ? config.metrics.calibration : protocol === 'peloton' ? 'peloton-v1' : 'sim-bike-v1'),
    realtime: opts.realtime === true,
    baudRate: capture.header?.baudRate ?? config.serial.baudRate,
    onRecord: opts.records ? (r) => process.stdout.write(`${JSON.stringify(recordToJson(r))}\n`) : undefined,
    log: createLogger('silent'),
  });
  if (opts.records) {
    process.stderr.write(`${num(result.records)} records from ${num(result.frames)} frames\n`);
  } else if (opts.json) json(result);
  else {
    const errors = Object.entries(result.decodeErrors).filter(([, n]) => n > 0);
    out(
      table([
        ['File', `${fileName} (${result.format === 'dump' ? 'plain byte dump' : 'capture'}, ${result.protocol})`],
        ['Bytes', `${num(result.bytesFromBoard)} from the board, ${num(result.bytesToBoard)} to it`],
        [
          'Frames',
          `${num(result.frames)} (${num(result.samples)} samples) · ${errors.length ? errors.map(([k, n]) => `${k} ${n}`).join(', ') : 'no decode errors'} · ${result.oversized} oversized · ${result.lostFrames} lost`,
        ],
        result.protocol === 'peloton'
          ? [
              'Board',
              `polled bus · resistance table ${result.calibration === 'bike' ? "from the bike's boot in the capture" : 'not in the capture: the default, records flagged'}`,
            ]
          : ['Board', result.hello ? `firmware ${result.hello.firmware} · serial ${result.hello.serial}` : 'no hello in the capture'],
        ...(result.wire
          ? Object.entries(result.wire).map(([k, v]) => [`  ${k}`, `${num(v.count)} replies, ${num(v.min)} to ${num(v.max)} on the wire`])
          : []),
        ['Records', `${num(result.records)} at 10 Hz over ${duration(result.boardSeconds)} of board time`],
      ]),
    );
    for (const r of result.rides) {
      out(
        `Ride      ${duration(r.durationS)} · ${num(r.distanceM / 1000, 2)} km · ${num(r.energyKj)} kJ · power avg ${num(r.avgPowerW)} max ${num(r.maxPowerW)} W · cadence avg ${num(r.avgCadenceRpm)} rpm · HR avg ${num(r.avgHrBpm)} bpm`,
      );
    }
  }
  process.exitCode = result.frames > 0 ? ExitCode.OK : ExitCode.FAILURE;
}
