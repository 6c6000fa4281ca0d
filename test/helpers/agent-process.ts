import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { fetchAgentHealth } from '../../src/api/client.js';
import { tempDir } from './agent.js';
import { freePort } from './broker.js';
import { cli, type Child } from './cli.js';
import { waitFor } from './wait.js';

/** A real agent process (`run --simulate`) with the HTTP API on a free loopback port. */
export interface AgentProcess {
  child: Child;
  dir: string;
  dataDir: string;
  socketPath: string;
  httpPort: number;
  /** The process is still running (never exited). */
  alive(): boolean;
  rssKb(): number;
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function startAgentProcess(
  config: Record<string, unknown> = {},
  opts: { dataDir?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<AgentProcess> {
  const dir = tempDir('agent-proc-');
  const dataDir = opts.dataDir ?? join(dir, 'data');
  const socketPath = join(dir, 'api.sock');
  const httpPort = await freePort();
  const { api, ...rest } = config as { api?: Record<string, unknown> };
  const file = join(dir, 'config.json');
  writeFileSync(
    file,
    JSON.stringify({
      device: { id: 'bike-hard-1' },
      dataDir,
      mqtt: { enabled: false },
      log: { records: 'none', statsIntervalS: 0 },
      ...rest,
      api: { socketPath, httpPort, ...api },
    }),
  );
  const child = cli(['run', '--simulate', '-c', file], { env: opts.env });
  let exited = false;
  void child.exited.then(() => (exited = true));
  await waitFor(() => exited || child.json().some((l) => l.msg === 'agent started'), 'agent started', 20_000);
  if (exited) throw new Error(`agent exited at start: ${child.stdout.slice(-5).join('\n')} ${child.stderr()}`);
  await waitFor(() => child.json().some((l) => l.msg === 'diagnostics page and browser api listening'), 'http api', 5_000);
  return {
    child,
    dir,
    dataDir,
    socketPath,
    httpPort,
    alive: () => !exited && child.proc.exitCode === null,
    rssKb: () => {
      // /proc is the truth about the process (not what it says of itself).
      const status = readFileSync(`/proc/${child.proc.pid}/status`, 'utf8');
      return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    },
    stop: async () => {
      child.proc.kill('SIGTERM');
      return child.exited;
    },
  };
}

/** One HTTP request on its own connection; resolves with status and body (never rejects on a reset: status 0). */
export function httpRequest(
  port: number,
  method: string,
  path: string,
  opts: { body?: string; type?: string; host?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        headers: { host: opts.host ?? `127.0.0.1:${port}`, ...(opts.type ? { 'content-type': opts.type } : {}) },
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.end(opts.body);
  });
}

/** Raw bytes to the HTTP port, for request targets node's client would refuse to send. */
export function rawHttp(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    let got = '';
    s.on('data', (d) => (got += d.toString()));
    s.on('error', () => resolve(got));
    s.on('close', () => resolve(got));
    s.on('connect', () => s.write(text));
    setTimeout(() => s.destroy(), 3000).unref();
  });
}

/** A socket client on the API that collects lines: `send` one request (a line), `write` raw bytes. */
export function socketClient(
  path: string,
): Promise<{ s: Socket; lines: Array<Record<string, unknown>>; send(x: unknown): void; write(text: string): void; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    const lines: Array<Record<string, unknown>> = [];
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
        buf = buf.slice(i + 1);
      }
    });
    const closed = new Promise<void>((r) => s.on('close', () => r()));
    s.once('connect', () =>
      resolve({
        s,
        lines,
        send: (x) => s.write(`${typeof x === 'string' ? x : JSON.stringify(x)}\n`),
        write: (text) => s.write(text),
        closed,
      }),
    );
    s.once('error', reject);
  });
}

/** The agent answers `health` on its socket. */
export async function answers(socketPath: string): Promise<boolean> {
  return (await fetchAgentHealth(socketPath, 3000)) !== null;
}
