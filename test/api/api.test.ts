import Database from 'better-sqlite3';
import { decode } from 'cbor-x';
import { readFileSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { createConnection } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent/agent.js';
import { ApiClient } from '../../src/api/client.js';
import { ApiRequestError } from '../../src/api/errors.js';
import { loadCalibration } from '../../src/metrics/calibration.js';
import { SimBoard } from '../../src/sim/board.js';
import { DEMO_RIDE } from '../../src/sim/ride-script.js';
import { SimRunner } from '../../src/sim/runner.js';
import { startAgent, tempDir } from '../helpers/agent.js';
import { freePort } from '../helpers/broker.js';
import { socketClient } from '../helpers/agent-process.js';
import { waitFor } from '../helpers/wait.js';

interface Live {
  tUs: number;
  powerW: number | null;
}

let sim: SimRunner;
let agent: Agent;
let dataDir: string;
let socketPath: string;
let httpPort: number;

beforeAll(async () => {
  sim = new SimRunner({ board: new SimBoard(loadCalibration('sim-bike-v1'), DEMO_RIDE) });
  const path = await sim.startOnPty(tempDir('api-pty-'));
  dataDir = tempDir('api-data-');
  socketPath = join(dataDir, 'api.sock');
  httpPort = await freePort();
  ({ agent } = startAgent(path, {
    dataDir,
    api: { socketPath, httpPort, clientQueueBytes: 16384, maxLineBytes: 4096 },
    rides: { idleEndS: 30 },
  }));
  await agent.startApi();
  await waitFor(() => agent.health().protocol.samples > 50, 'samples flowing');
});

afterAll(async () => {
  await agent?.stop();
  await sim?.stop();
});

/** A raw socket that collects lines. */
const raw = () => socketClient(socketPath);

describe('local API on the Unix socket', () => {
  it('greets with the API version, streams live records at 10 Hz and a 1 Hz summary, and serves the last minute', async () => {
    expect(statSync(socketPath).mode & 0o777).toBe(0o660);
    const c = await ApiClient.connect(socketPath);
    const live: Live[] = [];
    const summaries: unknown[] = [];
    let hello: Record<string, unknown> | null = null;
    c.onEvent((e, d) => {
      if (e === 'hello') hello = d as Record<string, unknown>;
      if (e === 'live') live.push(d as Live);
      if (e === 'summary') summaries.push(d);
    });
    await c.request('subscribe', { streams: ['live', 'summary'] });
    await sleep(3000);
    c.close();
    expect(hello).toMatchObject({ api: 1, deviceId: 'test-bike' });
    // 3 s at 10 Hz; coalesced reads deliver in bursts, so allow a tick either way.
    expect(live.length).toBeGreaterThanOrEqual(27);
    expect(live.length).toBeLessThanOrEqual(33);
    for (let i = 1; i < live.length; i++) expect(live[i].tUs - live[i - 1].tUs).toBe(100_000);
    expect(live.every((l) => typeof l.powerW === 'number')).toBe(true);
    expect(summaries.length).toBeGreaterThanOrEqual(2);
    expect(summaries.length).toBeLessThanOrEqual(4);
    expect(summaries[0]).toMatchObject({ powerW: expect.any(Number), cadenceRpm: expect.any(Number), ride: expect.any(Object) });

    const c2 = await ApiClient.connect(socketPath);
    const hist = await c2.request('live.history', { seconds: 2 });
    c2.close();
    expect(hist.powerW).toHaveLength(20);
    expect(hist.tUs[19] - hist.tUs[0]).toBe(1_900_000);
  });

  it('rides: started with a member and class, ended with a summary; the member is stored only as a pseudonym', async () => {
    const c = await ApiClient.connect(socketPath);
    const events: Array<Record<string, unknown>> = [];
    c.onEvent((e, d) => e === 'ride' && events.push(d as Record<string, unknown>));
    await c.request('subscribe', { streams: ['rides'] });
    const { started } = await c.request('ride.start', {
      member: 'alice@example.com',
      classId: 'hiit-20',
    });
    expect(started.member).toMatch(/^m1\.[A-Za-z0-9_-]{22}$/);
    const current = await c.request('ride.current');
    expect(current?.ride).toBe(started.ride);
    await sleep(2500);
    const s = await c.request('ride.end');
    expect(s).toMatchObject({ ride: started.ride, member: started.member, classId: 'hiit-20', startedBy: 'api', endReason: 'api' });
    expect(s.durationS).toBeGreaterThan(1.5);
    expect(s.distanceM).toBeGreaterThan(0);
    expect(s.avgPowerW as number).toBeGreaterThan(0);
    expect(s.maxPowerW as number).toBeGreaterThanOrEqual(s.avgPowerW as number);
    expect(s.avgCadenceRpm as number).toBeGreaterThan(0);
    expect(s.avgHrBpm as number).toBeGreaterThan(0);
    expect(s.best1minW).toBeNull();
    await expect(c.request('ride.end')).rejects.toMatchObject({ code: 'no_ride' });
    const listed = await c.request('rides.list', { member: 'alice@example.com' });
    expect(listed.map((r) => r.ride)).toEqual([started.ride]);
    expect(await c.request('rides.get', { ride: started.ride })).toMatchObject({ ride: started.ride, endReason: 'api' });
    await expect(c.request('rides.get', { ride: 'nope' })).rejects.toMatchObject({ code: 'not_found' });
    await waitFor(() => events.filter((e) => e.ride === started.ride).length >= 2, 'ride events');
    expect(events.filter((e) => e.ride === started.ride).map((e) => e.state)).toEqual(['started', 'ended']);
    c.close();
    // The raw member id is nowhere in the spool's files.
    await sleep(1200);
    for (const f of ['spool.db', 'spool.db-wal']) {
      try {
        expect(readFileSync(join(dataDir, f)).includes('alice@example.com')).toBe(false);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  });

  it("purging a member deletes their rides and records from the spool, queues a purge notice, and leaves others' data", async () => {
    const c = await ApiClient.connect(socketPath);
    const a = await c.request('ride.start', { member: 'bob', classId: 'c1' });
    await sleep(1500);
    await c.request('ride.end');
    const b = await c.request('ride.start', { member: 'carol' });
    await sleep(1500);
    await c.request('ride.end');
    await sleep(1100); // committed by the once-a-second flush
    const db = new Database(join(dataDir, 'spool.db'), { readonly: true });
    const rideId = (uuid: string) => (db.prepare('SELECT id FROM rides WHERE ride_uuid = ?').get(uuid) as { id: number } | undefined)?.id;
    const count = (id: number | undefined) => (db.prepare('SELECT count(*) AS n FROM records WHERE ride = ?').get(id) as { n: number }).n;
    const aId = rideId(a.started.ride);
    const bId = rideId(b.started.ride);
    const before = { a: count(aId), b: count(bId) };
    expect(before.a).toBeGreaterThan(10);
    expect(before.b).toBeGreaterThan(10);

    const result = await c.request('member.purge', { member: 'bob' });
    expect(result).toEqual({ member: a.started.member, rides: 1, records: before.a });
    expect(rideId(a.started.ride)).toBeUndefined();
    expect(count(aId)).toBe(0);
    expect(count(bId)).toBe(before.b);
    expect(await c.request('rides.list', { member: 'bob' })).toEqual([]);
    const notices = db.prepare("SELECT payload FROM outbox WHERE kind = 'purge'").all() as Array<{ payload: Buffer }>;
    db.close();
    expect(notices).toHaveLength(1);
    const notice = decode(notices[0].payload) as { v: number; dev: string; member: string; rides: Array<{ ride: string; seq: number[] }> };
    expect(notice).toMatchObject({ v: 1, dev: 'test-bike', member: a.started.member });
    expect(notice.rides.map((r) => r.ride)).toEqual([a.started.ride]);
    // The pseudonym works as well as the id (the cloud may only know the pseudonym).
    expect(await c.request('member.purge', { member: a.started.member! })).toEqual({ member: a.started.member, rides: 0, records: 0 });
    c.close();
  });

  it('bad requests get a clear error and the connection and the agent go on', async () => {
    const r = await raw();
    const before = agent.health().engine.records;
    r.write('this is not json\n');
    r.write('[1,2,3]\n');
    r.write('{"id":7,"method":"fly.away"}\n');
    r.write('{"id":8,"method":"rides.list","params":{"limit":-5}}\n');
    r.write('{"id":9,"method":"subscribe","params":{"streams":["nonsense"]}}\n');
    r.write(`{"id":10,"method":"hello","params":{"pad":"${'x'.repeat(5000)}"}}\n`);
    r.write('{"id":11,"method":"hello"}\n');
    // A line that never ends is refused as soon as it passes the limit, without buffering it all.
    r.write('x'.repeat(10_000));
    r.write('\n{"id":12,"method":"hello"}\n');
    await waitFor(() => r.lines.some((l) => l.id === 12), 'reply to the request after the oversized line');
    const byId = (id: unknown) => r.lines.filter((l) => l.id === id);
    const errors = r.lines.filter((l) => l.error).map((l) => (l.error as { code: string }).code);
    expect(errors).toEqual([
      'parse_error',
      'bad_request',
      'unknown_method',
      'bad_request',
      'bad_request',
      'line_too_long',
      'line_too_long',
    ]);
    expect((byId(7)[0].error as { message: string }).message).toMatch(/unknown method "fly.away"; methods: hello, health/);
    expect((byId(8)[0].error as { message: string }).message).toMatch(/limit/);
    expect(byId(11)[0].result).toMatchObject({ api: 1 });
    expect(byId(12)[0].result).toMatchObject({ api: 1 });
    r.s.destroy();
    await sleep(500);
    expect(agent.health().engine.records).toBeGreaterThan(before);
  });

  it('a client that never reads is dropped with a reason; the pipeline and other clients are not slowed', async () => {
    const watcher = await ApiClient.connect(socketPath);
    const seen: number[] = [];
    watcher.onEvent((e, d) => e === 'live' && seen.push((d as Live).tUs));
    await watcher.request('subscribe', { streams: ['live'] });
    const droppedBefore = agent.hub.stats().droppedSlow;
    const stuck = await raw();
    stuck.s.pause(); // never reads again
    stuck.write('{"id":1,"method":"subscribe","params":{"streams":["live","health"]}}\n');
    for (let i = 0; i < 200; i++) stuck.write(`{"id":${i + 2},"method":"live.history","params":{"seconds":120}}\n`);
    await waitFor(() => agent.hub.stats().droppedSlow > droppedBefore, 'the stuck client dropped', 15_000);
    const closed = new Promise((resolve) => stuck.s.once('close', resolve));
    stuck.s.resume();
    await closed;
    const reason = agent.recent.list().find((e) => e.msg === 'api client dropped');
    expect(reason?.fields.reason).toMatch(/slow client: more than 16384 bytes waiting/);
    const n = seen.length;
    await sleep(2000);
    watcher.close();
    // The watcher kept getting every record, 10 per second.
    expect(seen.length - n).toBeGreaterThanOrEqual(17);
    for (let i = 1; i < seen.length; i++) expect(seen[i] - seen[i - 1]).toBe(100_000);
  });

  it('a second agent on the same socket does not take it over', async () => {
    const path = await new SimRunner({ board: new SimBoard(loadCalibration('sim-bike-v1'), DEMO_RIDE) }).startOnPty(tempDir('api-pty2-'));
    const { agent: second } = startAgent(path, { dataDir: tempDir('api-data2-'), api: { socketPath } });
    await second.startApi();
    expect(second.health().api.socket).toBeNull();
    expect(second.recent.list().some((e) => (e.fields.err as { code?: string } | undefined)?.code === 'socket_in_use')).toBe(true);
    await second.stop();
    const c = await ApiClient.connect(socketPath);
    expect(await c.request('hello')).toMatchObject({ deviceId: 'test-bike' });
    c.close();
  });

  it('capture.start streams the raw serial bytes for the given time', async () => {
    const c = await ApiClient.connect(socketPath);
    const chunks: Buffer[] = [];
    let ended = '';
    c.onEvent((e, d) => {
      if (e === 'capture') chunks.push(Buffer.from((d as { b64: string }).b64, 'base64'));
      if (e === 'capture.end') ended = (d as { reason: string }).reason;
    });
    await c.request('capture.start', { seconds: 1 });
    await expect(c.request('capture.start', { seconds: 1 })).rejects.toBeInstanceOf(ApiRequestError);
    await waitFor(() => ended !== '', 'capture end', 5000);
    c.close();
    expect(ended).toBe('done');
    const bytes = Buffer.concat(chunks);
    // About 1 s of 50 Hz SAMPLE frames (28 bytes each with delimiters).
    expect(bytes.length).toBeGreaterThan(800);
    expect(bytes.filter((b) => b === 0).length).toBeGreaterThan(60);
  });
});

function http(
  method: string,
  path: string,
  opts: { host?: string; body?: string; type?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: httpPort,
        method,
        path,
        headers: { host: opts.host ?? `127.0.0.1:${httpPort}`, ...(opts.type ? { 'content-type': opts.type } : {}) },
      },
      (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('browser API on loopback', () => {
  it('serves the page, answers POST /api, streams SSE; refuses other hosts, other content types, big bodies', async () => {
    const page = await http('GET', '/');
    expect(page.status).toBe(200);
    expect(page.body).toContain('<title>bike-telemetry diagnostics</title>');
    const post = await http('POST', '/api', { type: 'application/json', body: '{"id":"h","method":"health"}' });
    expect(post.status).toBe(200);
    expect(JSON.parse(post.body)).toMatchObject({ id: 'h', result: { deviceId: 'test-bike', healthy: true } });
    const bad = await http('POST', '/api', { type: 'application/json', body: '{"id":1,"method":"nope"}' });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error.code).toBe('unknown_method');
    expect((await http('POST', '/api', { type: 'text/plain', body: '{"method":"health"}' })).status).toBe(415);
    expect((await http('GET', '/', { host: 'evil.example:80' })).status).toBe(403);
    expect((await http('POST', '/api', { type: 'application/json', body: 'x'.repeat(10_000) })).status).toBe(413);
    expect((await http('GET', '/api/events?streams=bogus')).status).toBe(400);

    const events: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: httpPort, path: '/api/events?streams=live,health', headers: { host: `localhost:${httpPort}` } },
        (res) => {
          expect(res.headers['content-type']).toBe('text/event-stream');
          res.on('data', (d: Buffer) => {
            for (const part of d.toString().split('\n\n')) if (part.startsWith('data: ')) events.push(part.slice(6));
            if (events.filter((e) => e.includes('"event":"live"')).length >= 10 && events.some((e) => e.includes('"event":"health"'))) {
              req.destroy();
              resolve();
            }
          });
        },
      );
      req.on('error', (e) => ((e as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(e)));
      req.end();
    });
    expect(JSON.parse(events[0])).toMatchObject({ event: 'hello', data: { api: 1 } });
  });

  it('listens on loopback only', async () => {
    const others = Object.values(networkInterfaces())
      .flat()
      .filter((i) => i && i.family === 'IPv4' && !i.internal)
      .map((i) => i!.address);
    for (const address of others) {
      const refused = await new Promise<boolean>((resolve) => {
        const s = createConnection({ host: address, port: httpPort });
        s.once('connect', () => (s.destroy(), resolve(false)));
        s.once('error', () => resolve(true));
      });
      expect(refused, `reachable on ${address}`).toBe(true);
    }
    // And the config cannot ask for anything else.
    const { parseConfig } = await import('../../src/config/load.js');
    expect(() => parseConfig({ api: { httpHost: '0.0.0.0' } })).toThrow(/api.httpHost/);
  });
});
