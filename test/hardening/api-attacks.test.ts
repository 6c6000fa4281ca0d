/**
 * Regression tests for the adversarial review's findings on the local API
 * (issue 15: H1, H2, H3, M5, M6, M10 and the API's low findings), each
 * through the real transport against a real agent process: the agent must
 * answer every one of them and never exit.
 */
import { createConnection, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { answers, httpRequest, rawHttp, socketClient, startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { waitFor } from '../helpers/wait.js';

let agent: AgentProcess;

beforeAll(async () => {
  // maxClients 32 as shipped; a short idle timeout so M6 is seen in seconds.
  agent = await startAgentProcess({ api: { maxClients: 32, idleTimeoutS: 2, maxHttpStreams: 8 } });
});

afterAll(async () => {
  const alive = agent?.alive();
  const exit = await agent?.stop();
  // The agent survived everything in this file and then stopped cleanly.
  expect(alive).toBe(true);
  expect(exit?.code).toBe(0);
});

describe('HTTP request targets and event streams (H1, H2)', () => {
  it('H1: an empty or comma-only stream list is a 400, not a crash', async () => {
    for (const q of ['streams=', 'streams=,', 'streams=,,,']) {
      const r = await httpRequest(agent.httpPort, 'GET', `/api/events?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body).toMatch(/name at least one of live/);
    }
    expect(agent.alive()).toBe(true);
    expect(await answers(agent.socketPath)).toBe(true);
  });

  it('H2: request targets that make new URL() throw get a 400', async () => {
    for (const target of ['//:', '//a:99999', '//[', '//%zz', '//@', 'http://:0', '*', '/%', '/api/events?streams=%zz']) {
      const reply = await rawHttp(agent.httpPort, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
      expect(reply, target).toMatch(/^HTTP\/1\.1 (400|404)/);
    }
    expect(agent.alive()).toBe(true);
    expect(await answers(agent.socketPath)).toBe(true);
  });

  it('a stream name that does not exist is a 400 naming it; the page still gets its streams', async () => {
    expect((await httpRequest(agent.httpPort, 'GET', '/api/events?streams=live,bogus')).body).toMatch(/unknown stream: bogus/);
  });
});

describe('what the HTTP port grants (M5)', () => {
  it("methods that act or read a member are forbidden over HTTP (403, code forbidden); the page's methods are served", async () => {
    const call = (method: string, params: object = {}) =>
      httpRequest(agent.httpPort, 'POST', '/api', { type: 'application/json', body: JSON.stringify({ id: 1, method, params }) });
    for (const [method, params] of [
      ['member.purge', { member: 'alice' }],
      ['ride.start', { member: 'alice' }],
      ['ride.end', {}],
      ['rides.list', { member: 'alice' }],
      ['rides.get', { ride: 'x' }],
      ['capture.start', { seconds: 1 }],
    ] as const) {
      const r = await call(method, params);
      expect(r.status, method).toBe(403);
      expect(JSON.parse(r.body).error.code).toBe('forbidden');
    }
    for (const method of ['hello', 'health', 'live.history', 'log.recent', 'ride.current'])
      expect((await call(method)).status, method).toBe(200);
    // The rides stream (members' rides) is the socket's only.
    expect((await httpRequest(agent.httpPort, 'GET', '/api/events?streams=live,rides')).status).toBe(403);
  });

  it('the same methods work on the 0660 socket', async () => {
    const c = await socketClient(agent.socketPath);
    c.send({ id: 7, method: 'rides.list', params: { limit: 1 } });
    await waitFor(() => c.lines.some((l) => l.id === 7), 'rides.list on the socket');
    expect(c.lines.find((l) => l.id === 7)).toHaveProperty('result');
    c.s.destroy();
  });
});

describe('event stream cap (M10)', () => {
  it('beyond api.maxHttpStreams a stream gets 503; never-reading streams do not grow the agent', async () => {
    const rssBefore = agent.rssKb();
    const held: Socket[] = [];
    const replies: string[] = [];
    for (let i = 0; i < 40; i++) {
      const s = createConnection({ host: '127.0.0.1', port: agent.httpPort });
      s.on('error', () => {});
      replies.push('');
      s.once('data', (d) => (replies[i] = d.toString().slice(0, 40)));
      s.write(`GET /api/events?streams=live,health,log HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      held.push(s);
    }
    await waitFor(() => replies.every((r) => r !== ''), 'every stream answered');
    // From here on they never read (the attacker's clients): what the agent sends stays queued.
    for (const s of held) s.pause();
    const ok = replies.filter((r) => r.startsWith('HTTP/1.1 200')).length;
    const refused = replies.filter((r) => r.startsWith('HTTP/1.1 503')).length;
    expect(ok).toBe(8);
    expect(refused).toBe(32);
    await sleep(3000);
    // Eight paused streams at 10 Hz for 3 s: bounded by the slow-client limit, not growing with the attack.
    expect(agent.rssKb() - rssBefore).toBeLessThan(40 * 1024);
    for (const s of held) s.destroy();
    expect(agent.alive()).toBe(true);
  });
});

describe('Unix socket clients (H3, M6)', () => {
  it('H3: with maxClients held, refused clients that reset without reading do not kill the agent', async () => {
    const held = await Promise.all(Array.from({ length: 32 }, () => socketClient(agent.socketPath)));
    for (const c of held) c.send({ id: 1, method: 'subscribe', params: { streams: ['health'] } });
    await sleep(200);
    const bursts: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      bursts.push(
        new Promise((resolve) => {
          const s = createConnection(agent.socketPath);
          s.on('error', () => resolve());
          s.on('close', () => resolve());
          // Never read, then close with the "busy" line unread: the agent's socket sees ECONNRESET/EPIPE.
          s.pause();
          s.on('connect', () => setTimeout(() => s.destroy(), i % 2 ? 0 : 20));
        }),
      );
    }
    await Promise.all(bursts);
    await sleep(500);
    expect(agent.alive()).toBe(true);
    for (const c of held) c.s.destroy();
    await sleep(200);
    expect(await answers(agent.socketPath)).toBe(true);
  });

  it('M6: idle connections that fill every place are closed after api.idleTimeoutS; a subscriber is kept', async () => {
    const idle = await Promise.all(Array.from({ length: 31 }, () => socketClient(agent.socketPath)));
    const subscriber = await socketClient(agent.socketPath);
    subscriber.send({ id: 1, method: 'subscribe', params: { streams: ['rides'] } });
    // Full now: the next client is told "busy".
    const refused = await socketClient(agent.socketPath);
    await waitFor(() => refused.lines.length > 0, 'busy line');
    expect(refused.lines[0]).toMatchObject({ error: { code: 'busy' } });
    // After the idle timeout every idle connection is closed, with the reason said.
    await Promise.all(idle.map((c) => c.closed));
    expect(idle[0].lines.at(-1)).toMatchObject({ event: 'closing', data: { reason: 'idle for 2 s' } });
    expect(subscriber.s.destroyed).toBe(false);
    expect(await answers(agent.socketPath)).toBe(true);
    subscriber.s.destroy();
  });
});

describe('API lows', () => {
  it('"constructor", "toString" and "__proto__" are unknown methods (no internal error); a long id is not echoed', async () => {
    const c = await socketClient(agent.socketPath);
    c.send({ id: 1, method: 'constructor' });
    c.send({ id: 2, method: 'toString' });
    c.send({ id: 3, method: '__proto__' });
    c.send({ id: 'x'.repeat(60_000).slice(0, 4000), method: 'hello' });
    await waitFor(() => c.lines.filter((l) => 'id' in l).length >= 4, 'four replies');
    const replies = c.lines.filter((l) => 'id' in l);
    for (const r of replies.slice(0, 3)) expect(r).toMatchObject({ error: { code: 'unknown_method' } });
    expect(replies[3]).toMatchObject({ id: null, error: { code: 'bad_request' } });
    c.s.destroy();
  });

  it('subscribe to live+capture is refused whole: live is not left subscribed', async () => {
    const c = await socketClient(agent.socketPath);
    c.send({ id: 1, method: 'subscribe', params: { streams: ['live', 'capture'] } });
    await waitFor(() => c.lines.some((l) => l.id === 1), 'reply');
    expect(c.lines.find((l) => l.id === 1)).toMatchObject({ error: { code: 'bad_request' } });
    await sleep(500);
    expect(c.lines.some((l) => l.event === 'live')).toBe(false);
    c.s.destroy();
  });
});
