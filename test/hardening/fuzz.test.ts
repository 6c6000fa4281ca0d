/**
 * Fuzzing kept in the suite (issue 15): seeded random request lines, JSON
 * bodies, request targets and socket behaviours against a running agent
 * process. The agent must stay up, stay bounded in memory and keep serving a
 * well-behaved client throughout. Each surface runs FUZZ_INPUTS inputs
 * (default 2,000 here; `FUZZ_INPUTS=100000 npx vitest run test/hardening/fuzz.test.ts`
 * for the full run) and stops early at FUZZ_SECONDS per surface.
 */
import { Agent as HttpAgent, request } from 'node:http';
import { createConnection } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/sim/rng.js';
import { answers, socketClient, startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';

const INPUTS = Number(process.env.FUZZ_INPUTS ?? 2000);
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 20);
const METHODS = [
  'hello',
  'health',
  'subscribe',
  'unsubscribe',
  'ride.start',
  'ride.end',
  'ride.current',
  'rides.list',
  'rides.get',
  'member.purge',
  'live.history',
  'log.recent',
  'capture.start',
  'capture.stop',
  'constructor',
  '__proto__',
  'toString',
  '',
];

let agent: AgentProcess;
let rssStartKb = 0;
let peakRssKb = 0;
let watcherEvents = 0;
let watcherLastMs = 0;
let stopWatcher: () => void = () => {};

/** Random values of the shapes a JSON request can take, deep and odd on purpose. */
function gen(rnd: () => number) {
  const int = (n: number): number => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const str = (): string => {
    const alphabets = ['abc', '\u0000\u0001\u001f', '"\\\\/', '\u00e9\u4e2d\ud83d\ude00', '\ud800', ' \t\n', '0123456789', '{}[],:'];
    let s = '';
    const n = pick([0, 1, 5, 20, 70, 300]);
    for (let i = 0; i < n; i++) s += pick(alphabets)[int(3)] ?? 'x';
    return s;
  };
  const value = (depth: number): unknown => {
    const k = int(depth > 3 ? 6 : 9);
    if (k === 0) return null;
    if (k === 1) return rnd() < 0.5;
    if (k === 2) return pick([0, -1, 1e308, -0, 2 ** 53, 0.1, 1e-320, 120, 3600, 500]);
    if (k === 3) return str();
    if (k === 4) return pick(['live', 'summary', 'health', 'rides', 'log', 'capture', '2026-12-05T12:00:00Z', 'm1.abc']);
    if (k === 5) return pick(METHODS);
    if (k === 6) return Array.from({ length: int(5) }, () => value(depth + 1));
    const o: Record<string, unknown> = {};
    for (let i = int(5); i > 0; i--)
      o[pick(['streams', 'member', 'seconds', 'limit', 'ride', 'before', 'classId', '__proto__', 'constructor', str()])] = value(depth + 1);
    return o;
  };
  const request = (): string => {
    const r = rnd();
    if (r < 0.1) return str(); // not JSON
    if (r < 0.15) return '['.repeat(int(3000)) + ']'.repeat(int(3000)); // deep nesting
    if (r < 0.2) return JSON.stringify(value(0));
    const req: Record<string, unknown> = { id: pick([1, 'a', null, -1, 1.5, str(), {}]), method: pick(METHODS) };
    if (rnd() < 0.8) req.params = rnd() < 0.9 ? value(1) : str();
    if (rnd() < 0.1) req[str()] = value(2);
    return JSON.stringify(req);
  };
  const target = (): string => {
    const parts = [
      '/',
      '//',
      '/api',
      '/api/events',
      '?streams=',
      ',',
      'live',
      'rides',
      '%',
      '%zz',
      '%00',
      '[',
      ']',
      '@',
      ':',
      '99999',
      '..',
      '#',
      '?',
      '&',
      'streams=live',
      'http://',
      'a',
      '~',
      '\u00ff',
    ];
    let t = rnd() < 0.9 ? '/' : '';
    for (let i = int(8); i > 0; i--) t += pick(parts);
    return t;
  };
  return { int, pick, request, target, rnd };
}

/** Run `fn` `INPUTS` times with at most `parallel` in flight, stopping at SECONDS. */
async function drive(parallel: number, fn: (i: number) => Promise<void>): Promise<number> {
  const deadline = Date.now() + SECONDS * 1000;
  let next = 0;
  let done = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < INPUTS && Date.now() < deadline) {
        const i = next++;
        await fn(i);
        done++;
        if (i % 500 === 0) peakRssKb = Math.max(peakRssKb, agent.rssKb());
      }
    }),
  );
  return done;
}

const counts: Record<string, number> = {};

beforeAll(async () => {
  agent = await startAgentProcess({ api: { maxClients: 64, idleTimeoutS: 5, maxHttpStreams: 8, maxLineBytes: 8192 } });
  // A well-behaved client (the console app): it must get live figures throughout.
  const c = await socketClient(agent.socketPath);
  c.send({ id: 1, method: 'subscribe', params: { streams: ['live'] } });
  c.s.on('data', () => {
    watcherEvents++;
    watcherLastMs = Date.now();
  });
  stopWatcher = () => c.s.destroy();
  rssStartKb = agent.rssKb();
});

afterAll(async () => {
  stopWatcher();
  const alive = agent?.alive();
  const exit = await agent?.stop();
  console.log(
    JSON.stringify({ fuzz: counts, rssStartMB: Math.round(rssStartKb / 1024), peakRssMB: Math.round(peakRssKb / 1024), watcherEvents }),
  );
  expect(alive).toBe(true);
  expect(exit?.code).toBe(0);
});

function stillServing(): void {
  expect(agent.alive()).toBe(true);
  expect(Date.now() - watcherLastMs).toBeLessThan(2000);
  // Bounded: the attack may not grow the agent by more than a generous margin over its start.
  expect(agent.rssKb() - rssStartKb).toBeLessThan(96 * 1024);
}

describe('fuzzing a running agent', () => {
  it(
    'socket request lines',
    async () => {
      const g = gen(seededRandom(15_001));
      const conns = await Promise.all(Array.from({ length: 4 }, () => socketClient(agent.socketPath)));
      counts.socketLines = await drive(4, async (i) => {
        const c = conns[i % 4];
        if (c.s.destroyed) return;
        const want = c.lines.length + 1;
        const line = g.request();
        c.send(line.includes('\n') ? line.replace(/\n/g, ' ') : line);
        // Wait for this line's reply (or the next event) before the next one: bounded in time.
        const t0 = Date.now();
        while (c.lines.length < want && !c.s.destroyed && Date.now() - t0 < 1000) await new Promise((r) => setImmediate(r));
        if (c.lines.length > 100) c.lines.splice(0, c.lines.length - 10);
      });
      for (const c of conns) c.s.destroy();
      stillServing();
      expect(await answers(agent.socketPath)).toBe(true);
    },
    (SECONDS + 60) * 1000,
  );

  it(
    'HTTP POST bodies',
    async () => {
      const g = gen(seededRandom(15_002));
      const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 8 });
      const statuses = new Map<number, number>();
      counts.httpBodies = await drive(8, (i) => {
        const body = i % 50 === 0 ? 'x'.repeat(g.int(20_000)) : g.request();
        return new Promise<void>((resolve) => {
          const req = request(
            {
              host: '127.0.0.1',
              port: agent.httpPort,
              method: 'POST',
              path: '/api',
              agent: httpAgent,
              headers: { host: `127.0.0.1:${agent.httpPort}`, 'content-type': 'application/json' },
            },
            (res) => {
              statuses.set(res.statusCode ?? 0, (statuses.get(res.statusCode ?? 0) ?? 0) + 1);
              res.resume();
              res.on('end', () => resolve());
              res.on('error', () => resolve());
            },
          );
          req.on('error', () => resolve());
          req.end(body);
        });
      });
      httpAgent.destroy();
      // Only answers a client can act on; never an internal error.
      expect(statuses.get(500) ?? 0).toBe(0);
      for (const s of statuses.keys()) expect([200, 400, 403, 413]).toContain(s);
      stillServing();
    },
    (SECONDS + 60) * 1000,
  );

  it(
    'HTTP request targets',
    async () => {
      const g = gen(seededRandom(15_003));
      const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 8 });
      const statuses = new Map<number, number>();
      counts.httpTargets = await drive(8, () => {
        const path = g.target();
        return new Promise<void>((resolve) => {
          let req;
          try {
            req = request(
              {
                host: '127.0.0.1',
                port: agent.httpPort,
                method: g.rnd() < 0.8 ? 'GET' : 'HEAD',
                path,
                agent: httpAgent,
                headers: { host: '127.0.0.1' },
                timeout: 2000,
              },
              (res) => {
                statuses.set(res.statusCode ?? 0, (statuses.get(res.statusCode ?? 0) ?? 0) + 1);
                // An event stream that opened is closed at once (the cap is tested elsewhere).
                if (res.headers['content-type'] === 'text/event-stream') res.destroy();
                else res.resume();
                res.on('end', () => resolve());
                res.on('close', () => resolve());
                res.on('error', () => resolve());
              },
            );
          } catch {
            resolve(); // a target node's own client refuses to send
            return;
          }
          req.on('timeout', () => req.destroy());
          req.on('error', () => resolve());
          req.end();
        });
      });
      httpAgent.destroy();
      expect(statuses.get(500) ?? 0).toBe(0);
      stillServing();
    },
    (SECONDS + 60) * 1000,
  );

  it(
    'socket behaviours: connect/close storms, half-open, partial lines, never-reading subscribers',
    async () => {
      const g = gen(seededRandom(15_004));
      const held: Array<{ destroy(): void }> = [];
      counts.socketBehaviours = await drive(24, (i) => {
        const kind = g.int(5);
        return new Promise<void>((resolve) => {
          const s = createConnection(agent.socketPath);
          s.on('error', () => resolve());
          s.on('close', () => resolve());
          // Whatever the agent does, this input is over within 3 s.
          setTimeout(() => {
            s.destroy();
            resolve();
          }, 3000).unref();
          if (kind !== 3) s.resume(); // read (and drop) what the agent sends
          s.on('connect', () => {
            if (kind === 0)
              s.destroy(); // connect and vanish
            else if (kind === 1) {
              s.end(); // half-open: nothing sent, write side closed; gone once the agent has spoken
              s.once('data', () => setImmediate(() => s.destroy()));
            } else if (kind === 2) {
              s.write(g.request().slice(0, g.int(40))); // a partial line, then gone
              s.destroy();
            } else if (kind === 3) {
              // A subscriber that never reads: held a while, then dropped.
              s.write('{"id":1,"method":"subscribe","params":{"streams":["live","summary","health","log"]}}\n');
              s.pause();
              if (held.length < 20) held.push(s);
              setTimeout(() => s.destroy(), 100 + g.int(300));
            } else {
              s.write(`${g.request()}\n`);
              s.once('data', () => setImmediate(() => s.destroy()));
              setTimeout(() => s.destroy(), 1000);
            }
          });
          if (i % 1000 === 999) stillServing();
        });
      });
      for (const s of held) s.destroy();
      stillServing();
      expect(await answers(agent.socketPath)).toBe(true);
    },
    (SECONDS + 60) * 1000,
  );
});
