/**
 * Flywheel-board firmware updates end to end over real ptys: the agent as
 * its own process (`bike-telemetry run`), the technician's `board update`,
 * and a simulated board with a bootloader, two slots in a file-backed flash,
 * flash timing, power cuts and a watchdog (src/sim/bootloader-board.ts) in
 * this process, where the test can cut its power and count what reached it.
 */
import { contractChecker } from '../helpers/contracts.js';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentHealth } from '../../src/contracts/health.js';
import { fetchAgentHealth } from '../../src/api/client.js';
import { buildImage } from '../../src/firmware/image.js';
import { loadCalibration } from '../../src/metrics/calibration.js';
import { SlotState, XferState } from '../../src/protocol/fwp/fwu.js';
import { BootloaderBoard, SimImageBehaviour, simFirmwareImage, type BootloaderBoardOptions } from '../../src/sim/bootloader-board.js';
import type { RideScript } from '../../src/sim/ride-script.js';
import { seededRandom } from '../../src/sim/rng.js';
import { SimRunner } from '../../src/sim/runner.js';
import { tempDir } from '../helpers/agent.js';
import mqtt from 'mqtt';
import { socketClient } from '../helpers/agent-process.js';
import { Broker } from '../helpers/broker.js';
import { cli, type Child } from '../helpers/cli.js';
import { keypair } from '../helpers/ota.js';
import { waitFor } from '../helpers/wait.js';

const check = contractChecker();

const cal = loadCalibration('sim-bike-v1');
const fleet = keypair('fw-fleet-1');
const stranger = keypair('fw-fleet-1');
const IDLE: RideScript = { name: 'idle', loop: true, segments: [{ durationS: 60, cadenceRpm: 0, resistancePct: 20, hrBpm: 0 }] };
const RIDING: RideScript = { name: 'riding', loop: true, segments: [{ durationS: 60, cadenceRpm: 85, resistancePct: 40, hrBpm: 130 }] };
const MODEL = 1;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Bike {
  dir: string;
  board: BootloaderBoard;
  runner: SimRunner<BootloaderBoard>;
  socket: string;
  config: string;
  agent: Child | null;
  start(): Promise<Child>;
  kill(): Promise<void>;
  health(): Promise<AgentHealth | null>;
  image(
    name: string,
    version: string,
    o?: { size?: number; behaviour?: number; model?: number; key?: typeof fleet; allowDowngrade?: boolean; seed?: number },
  ): string;
}

const bikes: Bike[] = [];

const brokers: Broker[] = [];

afterEach(async () => {
  for (const br of brokers.splice(0)) await br.down();
  for (const b of bikes.splice(0)) {
    await b.kill();
    await b.runner.stop();
    b.board.close();
  }
});

async function bike(
  o: { script?: RideScript; board?: Partial<BootloaderBoardOptions>; update?: Record<string, unknown>; mqttUrl?: string } = {},
): Promise<Bike> {
  const dir = tempDir('board-update-');
  const board = new BootloaderBoard(cal, o.script ?? IDLE, { flashFile: join(dir, 'flash.bin'), boardModel: MODEL, seed: 3, ...o.board });
  const runner = new SimRunner({ board, tickMs: 5 });
  const path = await runner.startOnPty(join(dir, 'pty'));
  writeFileSync(join(dir, 'fleet.pub'), fleet.trusted.publicKeyPem);
  const socket = join(dir, 'api.sock');
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      device: { id: 'bike-fw-1' },
      serial: { path, reopenBaseMs: 50, reopenCapMs: 200 },
      dataDir: join(dir, 'data'),
      mqtt: o.mqttUrl ? { url: o.mqttUrl, topicPrefix: 'bike' } : { enabled: false },
      log: { records: 'none', statsIntervalS: 0 },
      api: { socketPath: socket },
      board: {
        update: { trustedKeys: [{ id: fleet.id, publicKeyFile: join(dir, 'fleet.pub') }], idleS: 0, confirmDeadlineS: 5, ...o.update },
      },
    }),
  );
  const b: Bike = {
    dir,
    board,
    runner,
    socket,
    config,
    agent: null,
    async start() {
      const child = cli(['run', '-c', config]);
      b.agent = child;
      await waitFor(() => child.json().some((l) => l.msg === 'agent started'), 'agent started', 20_000);
      return child;
    },
    async kill() {
      const a = b.agent;
      b.agent = null;
      if (!a || a.proc.exitCode !== null || a.proc.signalCode !== null) return;
      a.proc.kill('SIGKILL');
      await a.exited;
    },
    health: () => fetchAgentHealth(socket, 2000),
    image(name, version, io = {}) {
      const raw = simFirmwareImage(io.size ?? 64 * 1024, io.behaviour ?? SimImageBehaviour.NORMAL, io.seed ?? 11);
      const key = io.key ?? fleet;
      const file = join(dir, name);
      writeFileSync(
        file,
        buildImage(raw, { boardModel: io.model ?? MODEL, version, allowDowngrade: io.allowDowngrade }, key.privateKeyPem, key.id),
      );
      return file;
    },
  };
  bikes.push(b);
  return b;
}

async function boardSaid(b: Bike, cond: (h: AgentHealth) => boolean, what: string, timeoutMs = 15_000): Promise<AgentHealth> {
  let last: AgentHealth | null = null;
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    last = await b.health();
    if (last && cond(last)) return last;
    await sleep(100);
  }
  throw new Error(
    `timed out waiting for ${what}; last health: ${JSON.stringify(last?.boardUpdate ?? null)} hello ${JSON.stringify(last?.board.hello ?? null)}`,
  );
}

async function submit(b: Bike, file: string, extra: string[] = []): Promise<{ code: number | null; out: string; err: string }> {
  const c = cli(['board', 'update', file, '-c', b.config, ...extra]);
  const r = await c.exited;
  return { code: r.code, out: c.stdout.join('\n'), err: c.stderr() };
}

describe('board firmware update over the link (real ptys, the agent as a process)', () => {
  it('updates: the bootloader takes the image, the new firmware says HELLO with its version, the agent confirms it; progress on the status topic, the live stream, status and board info', async () => {
    const broker = await Broker.start();
    brokers.push(broker);
    const b = await bike({ mqttUrl: broker.url });
    const seen: Array<{ update: { stage: string; percent: number }; board: { bootMode: string; firmware: string } | null }> = [];
    const sub = mqtt.connect(broker.url, { clientId: 'cloud-watch', username: 'cloud' });
    sub.on('message', (_t, p) => seen.push(JSON.parse(p.toString())));
    await new Promise<void>((r) => sub.on('connect', () => sub.subscribe('bike/bike-fw-1/status/board', { qos: 1 }, () => r())));
    await b.start();
    await boardSaid(b, (h) => h.board.hello?.firmware === '1.0.0', 'the board hello');
    const live = await socketClient(b.socket);
    live.send({ id: 1, method: 'subscribe', params: { streams: ['live'] } });
    const file = b.image('v110.fwimg', '1.1.0', { size: 100_000 });
    const statusDuring = (async () => {
      await boardSaid(b, (h) => h.boardUpdate?.stage === 'transferring' && h.boardUpdate.written > 0, 'transferring');
      const c = cli(['status', '-c', b.config]);
      await c.exited;
      return c.stdout.join('\n');
    })();
    const r = await submit(b, file);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/done at .* \(was 1\.0\.0\)/);
    const h = await boardSaid(b, (x) => x.board.hello?.firmware === '1.1.0', 'the new version');
    expect(h.board.hello).toMatchObject({ firmware: '1.1.0', bootMode: 'application', boardModel: MODEL });
    expect(h.boardUpdate).toMatchObject({
      stage: 'done',
      version: '1.1.0',
      fromVersion: '1.0.0',
      size: 100_000,
      percent: 100,
      error: null,
    });
    const m = b.board.fwu.meta;
    expect([m.xfer.state, m.activeSlot, m.slots[1].state, m.slots[0].state]).toEqual([
      XferState.CONFIRMED,
      1,
      SlotState.VALID,
      SlotState.VALID,
    ]);
    // Exactly the image went over the line, once.
    expect(b.board.fwu.chunkBytes).toBe(100_000);
    const info = cli(['board', 'info', '--json', '-c', b.config]);
    expect((await info.exited).code).toBe(0);
    const j = JSON.parse(info.stdout.join('\n'));
    check('api.schema.json#result.board.info', j);
    check('health.schema.json', h);
    expect(j.slots).toEqual([
      { slot: 0, state: 'valid', version: '1.0.0', active: false },
      { slot: 1, state: 'valid', version: '1.1.0', active: true },
    ]);
    expect(j.transfer).toMatchObject({ state: 'confirmed', version: '1.1.0', size: 100_000, next: 100_000 });
    // Samples flow again from the new firmware.
    const before = (await b.health())!.protocol.samples;
    await sleep(500);
    expect((await b.health())!.protocol.samples).toBeGreaterThan(before);
    // `status` said it while it went on; the console app's live stream was told the figures pause, then resume.
    expect(await statusDuring).toMatch(/firmware update to 1\.1\.0: sending \d+(\.\d)? % \(/);
    const boardEvents = live.lines.filter((l) => l.event === 'board').map((l) => l.data as { updating: boolean; stage: string });
    for (const e of boardEvents) check('api.schema.json#event.board', e);
    expect(boardEvents[0]).toMatchObject({ updating: false, stage: 'waiting-idle' });
    expect(boardEvents.find((e) => e.stage === 'transferring')).toMatchObject({ updating: true });
    expect(boardEvents.find((e) => e.stage === 'testing')).toMatchObject({ updating: true });
    expect(boardEvents.at(-1)).toMatchObject({ updating: false, stage: 'done' });
    live.s.destroy();
    // The cloud saw the progress on the retained status topic: stages, every 10 %, and the new firmware.
    await waitFor(() => seen.some((m) => m.update.stage === 'done'), 'done on the status topic', 5000);
    sub.end(true);
    for (const m of seen) check('mqtt.schema.json#BoardStatusMessage', m);
    const stages = [...new Set(seen.map((m) => m.update.stage))];
    expect(stages).toEqual(['waiting-idle', 'transferring', 'testing', 'done']);
    expect(seen.filter((m) => m.update.stage === 'transferring').length).toBeGreaterThanOrEqual(9);
    expect(seen.at(-1)!.board).toMatchObject({ firmware: '1.1.0', bootMode: 'application' });
  });

  it("survives the agent killed at 10 random moments and the cable pulled twice mid-transfer: each time it resumes at the board's offset, under 1.2 times the image on the line", async () => {
    const b = await bike();
    await b.start();
    await boardSaid(b, (h) => h.board.hello !== null, 'the board hello');
    const size = 256 * 1024;
    const file = b.image('v120.fwimg', '1.2.0', { size, seed: 12 });
    expect((await submit(b, file, ['--detach'])).code).toBe(0);
    // Seeded moments, as offsets the board has written: 10 kills and 2 unplugs, shuffled together.
    const rand = seededRandom(20261206);
    const events = [...Array.from({ length: 10 }, () => 'kill'), 'unplug', 'unplug']
      .map((kind) => ({ kind, at: Math.floor((0.05 + rand() * 0.9) * size) }))
      .sort((x, y) => x.at - y.at);
    const resumesAt: number[] = [];
    for (const e of events) {
      await waitFor(() => b.board.fwu.next >= e.at, `board offset ${e.at}`, 60_000, 2);
      expect(b.board.fwu.meta.xfer.state).toBe(XferState.RECEIVING);
      if (e.kind === 'kill') {
        await b.kill();
        resumesAt.push(b.board.fwu.next);
        await b.start();
      } else {
        await b.runner.unplug();
        await sleep(300);
        await b.runner.replug();
        resumesAt.push(b.board.fwu.next);
      }
      // Each interruption is its own: the next comes after the board has been asked to resume this one.
      const begun = b.board.fwu.begins.length;
      await waitFor(() => b.board.fwu.begins.length > begun, 'the transfer resumed', 20_000, 2);
    }
    const h = await boardSaid(
      b,
      (x) => x.boardUpdate?.stage === 'done' || x.boardUpdate?.stage === 'failed',
      'the end of the update',
      60_000,
    );
    expect(h.boardUpdate?.error).toBeNull();
    expect(h.boardUpdate?.stage).toBe('done');
    expect(h.board.hello?.firmware).toBe('1.2.0');
    // Every interruption was resumed by a FW_BEGIN the board answered with its offset, never from 0.
    const resumed = b.board.fwu.begins.filter((x) => x.resumed);
    expect(resumed.length).toBe(12);
    expect(b.board.fwu.begins.filter((x) => !x.resumed).length).toBe(1);
    for (const r of resumed) expect(r.next).toBeGreaterThan(0);
    const sent = b.board.fwu.chunkBytes;
    expect(sent / size).toBeLessThan(1.2);
    expect(sent).toBeGreaterThanOrEqual(size);
    expect(resumesAt.length).toBe(12);
  }, 120_000);

  it('line noise: corrupted chunks are refused by the board and sent again; the image is exact', async () => {
    const b = await bike({ board: { chunkNoiseRate: 0.04, seed: 5 } });
    await b.start();
    await boardSaid(b, (h) => h.board.hello !== null, 'the board hello');
    const r = await submit(b, b.image('v130.fwimg', '1.3.0', { size: 80_000 }));
    expect(r.code).toBe(0);
    const h = (await b.health())!;
    expect(b.board.counters.chunkNoise).toBeGreaterThan(5);
    expect(h.boardUpdate!.retransmits).toBeGreaterThan(0);
    expect([h.board.hello?.firmware, b.board.fwu.meta.xfer.state]).toEqual(['1.3.0', XferState.CONFIRMED]);
  });

  it('refuses before a byte is written: a forged signature, another board model, a downgrade the image does not allow (exit 7)', async () => {
    const b = await bike();
    await b.start();
    await boardSaid(b, (h) => h.board.hello?.firmware === '1.0.0', 'the board hello');
    const cases = [
      { file: b.image('forged.fwimg', '1.5.0', { key: stranger }), why: /bad_signature/ },
      { file: b.image('other.fwimg', '1.5.0', { model: 2 }), why: /wrong_model/ },
      { file: b.image('old.fwimg', '0.9.0'), why: /downgrade/ },
      { file: b.image('same.fwimg', '1.0.0'), why: /same_version/ },
    ];
    for (const c of cases) {
      const r = await submit(b, c.file);
      expect(r.code, c.file).toBe(7);
      expect(r.err).toMatch(c.why);
      expect(r.err).toMatch(/nothing sent to the board/);
    }
    const missing = await submit(b, join(b.dir, 'nope.fwimg'));
    expect(missing.code).toBe(6);
    expect(b.board.fwu.chunkBytes).toBe(0);
    expect(b.board.fwu.begins).toEqual([]);
    expect(b.board.counters.resets).toBe(1); // never sent to its bootloader
    // A downgrade the signed image allows is taken.
    const r = await submit(b, b.image('rollback.fwimg', '0.9.0', { allowDowngrade: true }));
    expect(r.code).toBe(0);
    expect((await b.health())!.board.hello?.firmware).toBe('0.9.0');
  });

  it('power lost mid-write: the torn slot never boots, the old firmware comes up, and the transfer resumes at the torn sector', async () => {
    const b = await bike();
    await b.start();
    await boardSaid(b, (h) => h.board.hello !== null, 'the board hello');
    const size = 120_000;
    expect((await submit(b, b.image('v140.fwimg', '1.4.0', { size }), ['--detach'])).code).toBe(0);
    // Cut while a chunk is being programmed (between two chunks there is nothing to tear).
    await waitFor(() => b.board.fwu.next > size / 2 && b.board.programming, 'half the image written, a chunk being programmed', 30_000, 1);
    b.board.powerCut();
    expect(b.board.counters.tornWrites).toBe(1);
    await sleep(400);
    b.board.powerOn();
    // The old firmware (slot 0) boots; the new slot is not valid.
    await boardSaid(
      b,
      (h) => h.board.hello?.bootMode === 'application' && h.board.hello.firmware === '1.0.0',
      'the old firmware after the power cut',
    );
    expect(b.board.fwu.meta.slots[1].state).toBe(SlotState.INVALID);
    const h = await boardSaid(b, (x) => x.boardUpdate?.stage === 'done', 'the update done', 30_000);
    expect(h.board.hello?.firmware).toBe('1.4.0');
    const resumed = b.board.fwu.begins.filter((x) => x.resumed);
    expect(resumed.length).toBe(1);
    expect(resumed[0].next % 4096).toBe(0); // the torn sector is written again from its start
    expect(b.board.fwu.chunkBytes / size).toBeLessThan(1.2);
  });

  it('an image that hangs at boot: the board reverts by itself after the deadline, the agent reports the update failed', async () => {
    const b = await bike();
    await b.start();
    await boardSaid(b, (h) => h.board.hello !== null, 'the board hello');
    const r = await submit(b, b.image('hang.fwimg', '1.6.0', { behaviour: SimImageBehaviour.HANG_AT_BOOT }));
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/FAILED: the board went back to 1\.0\.0: 1\.6\.0 did not confirm within 5 s/);
    const h = (await b.health())!;
    expect(h.boardUpdate).toMatchObject({ stage: 'failed', error: { code: 'reverted' } });
    expect(h.board.hello).toMatchObject({ firmware: '1.0.0', bootMode: 'application' });
    expect([b.board.counters.watchdogResets, b.board.counters.reverts, b.board.fwu.meta.xfer.state, b.board.fwu.meta.activeSlot]).toEqual([
      1,
      1,
      XferState.REJECTED,
      0,
    ]);
  }, 60_000);

  it("an image shipped with the agent (a release's board-firmware/) is installed by itself when the board runs an older one; a forged one is refused", async () => {
    const b = await bike({ update: { imagesDir: 'IMAGES' } });
    const images = join(b.dir, 'images');
    mkdirSync(images);
    renameSync(b.image('flywheel-1.7.0.fwimg', '1.7.0', { size: 30_000 }), join(images, 'flywheel-1.7.0.fwimg'));
    renameSync(b.image('flywheel-1.9.0.fwimg', '1.9.0', { key: stranger }), join(images, 'flywheel-1.9.0.fwimg'));
    renameSync(b.image('other-model-2.0.0.fwimg', '2.0.0', { model: 2 }), join(images, 'other-model-2.0.0.fwimg'));
    writeFileSync(b.config, readFileSync(b.config, 'utf8').replace('"IMAGES"', JSON.stringify(images)));
    const agent = await b.start();
    const h = await boardSaid(b, (x) => x.boardUpdate?.stage === 'done', 'the bundled image installed', 30_000);
    expect([h.boardUpdate?.version, h.board.hello?.firmware]).toEqual(['1.7.0', '1.7.0']);
    expect(
      agent
        .json()
        .some(
          (l) => l.msg === 'bundled board image refused' && String((l.err as { message?: string })?.message).includes('does not verify'),
        ),
    ).toBe(true);
    // The board runs it now: a restarted agent leaves it alone.
    await b.kill();
    const again = await b.start();
    await boardSaid(b, (x) => x.board.hello?.firmware === '1.7.0', 'the hello');
    await sleep(500);
    expect(again.json().some((l) => String(l.msg).includes('update queued'))).toBe(false);
    expect(b.board.fwu.begins.length).toBe(1);
  });

  it('a board whose firmware speaks fwp 1.0 cannot take an update: refused with nothing sent (exit 7), board info says so', async () => {
    const dir = tempDir('board-update-10-');
    writeFileSync(join(dir, 'fleet.pub'), fleet.trusted.publicKeyPem);
    const config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        dataDir: join(dir, 'data'),
        mqtt: { enabled: false },
        log: { records: 'none', statsIntervalS: 0 },
        api: { socketPath: join(dir, 'api.sock') },
        board: { update: { trustedKeys: [{ id: fleet.id, publicKeyFile: join(dir, 'fleet.pub') }], idleS: 0 } },
      }),
    );
    // run --simulate plays the 1.0 board (no bootloader).
    const agent = cli(['run', '--simulate', '-c', config]);
    try {
      await waitFor(() => agent.json().some((l) => l.msg === 'board hello' || l.msg === 'board booted'), 'the board hello', 20_000);
      const file = join(dir, 'v2.fwimg');
      writeFileSync(file, buildImage(simFirmwareImage(1000, 0), { boardModel: MODEL, version: '2.0.0' }, fleet.privateKeyPem, fleet.id));
      const r = cli(['board', 'update', file, '-c', config]);
      expect((await r.exited).code).toBe(7);
      expect(r.stderr()).toMatch(/board_unsupported: the board speaks fwp 1\.0/);
      const info = cli(['board', 'info', '-c', config]);
      expect((await info.exited).code).toBe(0);
      expect(info.stdout.join('\n')).toMatch(
        /Updates {3}not possible over the link: the board's firmware does not take updates over the link \(fwp 1\.0\)/,
      );
    } finally {
      agent.proc.kill('SIGTERM');
      await agent.exited;
    }
  });

  it('never during a ride: the update waits for idle and gives up at its deadline without touching the board', async () => {
    const b = await bike({ script: RIDING, update: { idleS: 2, waitIdleMaxS: 4 } });
    await b.start();
    await boardSaid(b, (h) => h.board.hello !== null && h.protocol.samples > 50, 'samples');
    const c = cli(['board', 'update', b.image('v150.fwimg', '1.5.0'), '-c', b.config]);
    await boardSaid(b, (h) => h.boardUpdate?.stage === 'waiting-idle', 'waiting for idle');
    const r = await c.exited;
    expect(r.code).toBe(1);
    expect(c.stdout.join('\n')).toMatch(/waiting for the bike to be idle[\s\S]*FAILED: the bike was not idle for 2 s within 4 s/);
    expect((await b.health())!.boardUpdate).toMatchObject({ stage: 'failed', error: { code: 'not_idle' } });
    expect([b.board.fwu.chunkBytes, b.board.fwu.begins.length, b.board.counters.resets]).toEqual([0, 0, 1]);
  });
});
