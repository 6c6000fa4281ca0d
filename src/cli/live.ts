/**
 * `bike-telemetry live`: the figures at 10 Hz in a terminal, with
 * sparklines of the last minute. Plain ANSI (works over SSH, in tmux, on the
 * tablet's console); q or Ctrl-C quits and restores the terminal.
 */
import type { AgentHealth } from '../contracts/health.js';
import { loadConfig } from '../config/load.js';
import { ApiClient } from '../api/client.js';
import { AgentNotRunningError } from '../api/errors.js';
import { ExitCode } from './exit-codes.js';
import { duration, num } from './format.js';

export interface LiveOptions {
  config?: string;
  socket?: string;
}

interface LiveData {
  tUs: number;
  powerW: number | null;
  cadenceRpm: number | null;
  hrBpm: number | null;
  speedKmh: number | null;
  resistancePct: number | null;
  distanceM: number | null;
  energyKj: number | null;
  flags: number;
}

const BLOCKS = '▁▂▃▄▅▆▇█';
const MINUTE = 600;

/** The last minute of one figure, newest last, as a sparkline `width` cells wide. */
export function sparkline(values: readonly (number | null)[], width: number): string {
  if (width <= 0) return '';
  const known = values.filter((v): v is number => v !== null);
  const max = Math.max(1, ...known);
  const per = MINUTE / width;
  let s = '';
  for (let cell = 0; cell < width; cell++) {
    // Right-aligned: the newest value is always the last cell.
    const from = values.length - MINUTE + Math.floor(cell * per);
    const to = values.length - MINUTE + Math.floor((cell + 1) * per);
    let sum = 0;
    let n = 0;
    for (let i = Math.max(0, from); i < to; i++) {
      const v = values[i];
      if (v !== null && v !== undefined) {
        sum += v;
        n++;
      }
    }
    s += n === 0 ? ' ' : BLOCKS[Math.min(7, Math.floor((sum / n / max) * 7.999))];
  }
  return s;
}

export async function liveCommand(opts: LiveOptions): Promise<void> {
  const config = loadConfig(opts.config);
  let client: ApiClient;
  try {
    client = await ApiClient.forConfig(config, opts.socket);
  } catch (err) {
    if (err instanceof AgentNotRunningError) {
      process.stderr.write(`bike-telemetry live: ${err.message}\n`);
      process.exitCode = ExitCode.NOT_RUNNING;
      return;
    }
    throw err;
  }
  const power: (number | null)[] = [];
  const cadence: (number | null)[] = [];
  const hr: (number | null)[] = [];
  const push = (a: (number | null)[], v: number | null): void => {
    a.push(v);
    if (a.length > MINUTE) a.shift();
  };
  const hist = await client.request('live.history', { seconds: 60 });
  hist.powerW.forEach((v, i) => {
    push(power, v);
    push(cadence, hist.cadenceRpm[i]);
    push(hr, hist.hrBpm[i]);
  });
  let health = await client.request('health');
  let last: LiveData | null = null;
  const stdout = process.stdout;
  const tty = stdout.isTTY === true;

  const render = (): void => {
    const cols = tty ? stdout.columns : 100;
    const w = Math.max(10, Math.min(120, cols - 22));
    const d = last;
    const ride = health.ride;
    const lines = [
      `bike-telemetry live · ${health.deviceId} · link ${health.link.state} · upload ${health.upload.state} · ${health.healthy ? 'healthy' : 'UNHEALTHY'}   q: quit`,
      '',
      `Power    ${num(d?.powerW).padStart(5)} W    ${sparkline(power, w)}`,
      `Cadence  ${num(d?.cadenceRpm).padStart(5)} rpm  ${sparkline(cadence, w)}`,
      `Heart    ${num(d?.hrBpm).padStart(5)} bpm  ${sparkline(hr, w)}`,
      '',
      `Speed ${num(d?.speedKmh, 1)} km/h · Resistance ${num(d?.resistancePct, 0)} % · Distance ${num((d?.distanceM ?? 0) / 1000, 2)} km · Energy ${num(d?.energyKj, 1)} kJ`,
      `Ride  ${ride ? `${duration(ride.durationS)} · avg ${num(ride.avgPowerW)} W · max ${num(ride.maxPowerW)} W · ${ride.startedBy}` : 'none in progress'}`,
    ];
    if (tty) stdout.write(`\x1b[H${lines.map((l) => `${l}\x1b[K`).join('\n')}\x1b[J`);
    else stdout.write(`${lines[2]}\n`);
  };

  let finished = false;
  const finish = (code: number, message?: string): void => {
    if (finished) return;
    finished = true;
    if (process.stdin.isTTY) process.stdin.setRawMode(false);
    process.stdin.pause();
    if (tty) stdout.write('\x1b[?25h\n');
    if (message) process.stderr.write(`${message}\n`);
    client.close();
    process.exitCode = code;
  };

  client.onEvent((event, data) => {
    if (event === 'live') {
      last = data as LiveData;
      push(power, last.powerW);
      push(cadence, last.cadenceRpm);
      push(hr, last.hrBpm);
      render();
    } else if (event === 'health') health = data as AgentHealth;
  });
  client.onClose((reason) => finish(ExitCode.FAILURE, `bike-telemetry live: ${reason}`));
  if (tty) stdout.write('\x1b[?25l\x1b[2J');
  render();
  await client.request('subscribe', { streams: ['live', 'health'] });

  if (process.stdin.isTTY) {
    process.stdin.setRawMode(true);
    process.stdin.resume();
    process.stdin.on('data', (b: Buffer) => {
      // q, Q, Ctrl-C, Esc
      if (b.includes(0x71) || b.includes(0x51) || b.includes(0x03) || (b.length === 1 && b[0] === 0x1b)) finish(ExitCode.OK);
    });
  }
  process.once('SIGINT', () => finish(ExitCode.OK));
  process.once('SIGTERM', () => finish(ExitCode.OK));
}
