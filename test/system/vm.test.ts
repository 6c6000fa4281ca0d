/**
 * The console as a VM (qemu), for what a container cannot show: the board on
 * a real UART (the guest's 16550 driver and our udev rule), a real USB unplug
 * (qemu's usb-serial removed and re-added through QMP), and power cuts (the
 * qemu process killed, the disk without host caching).
 *
 * Power cuts: BIKE_SYSTEM_CUTS (npm run test:system -- --cuts N), default 10.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadCalibration } from '../../src/metrics/calibration.js';
import { SimBoard } from '../../src/sim/board.js';
import { DEMO_RIDE } from '../../src/sim/ride-script.js';
import { seededRandom } from '../../src/sim/rng.js';
import { SimRunner } from '../../src/sim/runner.js';
import { Broker } from '../helpers/broker.js';
import { Consumer } from '../helpers/consumer.js';
import { waitFor } from '../helpers/wait.js';
import { consoleImage, imageKeyFiles, REPO } from './helpers/image.js';
import { Vm, type JournalLine } from './helpers/vm.js';

const CUTS = Number(process.env.BIKE_SYSTEM_CUTS ?? 10);
const SEED = 20261205;
let broker: Broker;
let consumer: Consumer;

/** The board emulator on one of qemu's chardev sockets: one connection kept open, answering requests. */
class SocketBoard {
  private sock: Socket | null = null;
  private runner: SimRunner | null = null;

  async connect(path: string, seed: number): Promise<void> {
    this.close();
    const board = new SimBoard(loadCalibration('sim-bike-v1'), DEMO_RIDE, { sampleRateHz: 50, seed });
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = connect(path, () => resolve(s));
      s.once('error', reject);
    });
    sock.on('error', () => undefined);
    sock.on('data', (chunk: Buffer) => {
      for (const reply of board.receive(chunk)) sock.write(reply);
    });
    const runner = new SimRunner({ board });
    runner.startOnStream(sock);
    this.sock = sock;
    this.runner = runner;
  }

  close(): void {
    void this.runner?.stop();
    this.sock?.destroy();
    this.runner = null;
    this.sock = null;
  }
}

function vmConfig(device: string): Record<string, unknown> {
  return {
    device: { id: device },
    serial: { path: '/dev/flywheel' },
    dataDir: '/var/lib/bike-telemetry',
    // debug: the spool says what each commit made durable (the power-cut observer).
    log: { records: 'none', level: 'debug', statsIntervalS: 0 },
    mqtt: { url: `mqtt://10.0.2.2:${broker.port}`, backoffBaseMs: 500, backoffCapMs: 5000 },
  };
}

/** A probe in the guest (not part of the product): logs the board's tty nodes as udev sees them come and go. */
function addUdevProbe(root: string): void {
  mkdirSync(join(root, 'etc/udev/rules.d'), { recursive: true });
  writeFileSync(
    join(root, 'etc/udev/rules.d/99-bike-probe.rules'),
    'SUBSYSTEM=="tty", KERNEL=="ttyUSB*|ttyS1", ACTION=="add|remove", RUN+="/usr/bin/logger -t bike-probe tty $env{ACTION} $kernel links=$env{DEVLINKS}"\n',
  );
}

const isReady = (l: JournalLine) => l.json?.msg === 'systemd notified: ready';

/** Each VM gets its own broker and consumer: sequence numbers are per device. */
async function freshBroker(): Promise<void> {
  await consumer?.close();
  await broker?.down();
  broker = await Broker.start();
  consumer = await Consumer.connect(broker.url);
}

afterAll(async () => {
  await consumer?.close();
  await broker?.down();
});

describe('the console as a VM (qemu): the board on the UART, power cuts', () => {
  const board = new SocketBoard();
  let vm: Vm;
  const DEVICE = 'bike-vm-uart';

  beforeAll(async () => {
    await freshBroker();
    const image = consoleImage();
    vm = Vm.create({
      name: 'bike-vm-uart',
      image,
      config: vmConfig(DEVICE),
      prepare: (root) => {
        // As a technician installs the original bike: the board on the tablet's ttyS1.
        const r = spawnSync(
          'bash',
          [join(REPO, 'scripts/install'), '--root', root, '--source', imageKeyFiles(image).bundle, '--board-uart', 'ttyS1'],
          { encoding: 'utf8' },
        );
        if (r.status !== 0) throw new Error(`install --board-uart: ${r.stderr}`);
        addUdevProbe(root);
      },
    });
  });

  afterAll(async () => {
    board.close();
    await vm?.destroy();
  });

  it('the board on a real UART: the 16550 driver and our udev rule give /dev/flywheel; records reach the broker', async () => {
    await vm.boot();
    await board.connect(vm.boardSocket, SEED);
    const ready = await vm.waitJournal(isReady, 'READY from the agent', 600_000);
    const bootToReadyMs = ready.at - vm.bootStartedAt;
    const linked = await vm.waitJournal(
      (l) => /bike-probe.*tty add ttyS1 .*\/dev\/flywheel/.test(l.text),
      'udev naming ttyS1 /dev/flywheel',
      60_000,
    );
    expect(linked.text).toMatch(/links=.*\/dev\/flywheel/);
    await vm.waitJournal((l) => l.json?.msg === 'link open', 'the agent opening /dev/flywheel', 120_000);
    await waitFor(() => [...consumer.packets].length > 0 && consumer.seen.size >= 50, 'records from the VM', 300_000, 200);
    console.log(JSON.stringify({ measure: 'VM boot to READY', bootToReadyMs }));
    expect(consumer.invalid).toEqual([]);
  });

  it(
    `power cuts at ${CUTS} random moments: the spool opens, numbers never repeat, every committed record reaches the broker`,
    async () => {
      const rnd = seededRandom(SEED);
      interface Cut {
        cut: number;
        afterReadyMs: number;
        committedSeen: Array<[number, number]>;
        lastCommitAgeMs: number;
        bootStart: number;
      }
      const cuts: Cut[] = [];
      let bootJournalStart = 0;
      let readyAt = vm.journal.find(isReady)!.at;
      for (let k = 1; k <= CUTS; k++) {
        const waitMs = 3000 + Math.floor(rnd() * 12_000);
        await new Promise((r) => setTimeout(r, waitMs));
        const cutAt = Date.now();
        await vm.powerCut();
        board.close();
        const lines = vm.journal.slice(bootJournalStart);
        const commits = lines.filter((l) => l.json?.msg === 'spool committed');
        const ranges = commits.map(
          (l) => [Number(l.json!.lastSeq) - Number(l.json!.records) + 1, Number(l.json!.lastSeq)] as [number, number],
        );
        cuts.push({
          cut: k,
          afterReadyMs: cutAt - readyAt,
          committedSeen: ranges,
          lastCommitAgeMs: commits.length ? cutAt - commits[commits.length - 1].at : -1,
          bootStart: bootJournalStart,
        });
        // Power back: a cold boot on the same disk.
        bootJournalStart = vm.journal.length;
        await vm.boot();
        await board.connect(vm.boardSocket, SEED + k);
        const ready = await vm.waitJournal(isReady, `READY after cut ${k}`, 600_000, bootJournalStart);
        readyAt = ready.at;
        const spoolLine = await vm.waitJournal(
          (l) => l.json?.msg === 'spool open' || /spool unreadable/.test(String(l.json?.msg)),
          `spool after cut ${k}`,
          60_000,
          bootJournalStart,
        );
        expect(spoolLine.json?.msg === 'spool open' || /moved aside/.test(String(spoolLine.json?.msg))).toBe(true);
      }
      // Let the last boot deliver the backlog, then account for every cut.
      const committed = cuts.flatMap((c) => c.committedSeen.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => a + i)));
      await waitFor(() => committed.every((s) => consumer.seen.has(s)), 'every committed record at the broker', 600_000, 500).catch(
        (err: Error) => {
          const missing = committed.filter((s) => !consumer.seen.has(s));
          throw new Error(`${err.message}: ${missing.length} committed records missing, first ${missing.slice(0, 10).join(',')}`);
        },
      );
      const seen = [...consumer.seen.keys()].sort((a, b) => a - b);
      const table = cuts.map((c, i) => {
        const lo = c.committedSeen.length ? c.committedSeen[0][0] : NaN;
        const hi = c.committedSeen.length ? c.committedSeen[c.committedSeen.length - 1][1] : NaN;
        const nextLo = cuts[i + 1]?.committedSeen[0]?.[0] ?? Infinity;
        const ofBoot = seen.filter((s) => s >= lo && s < nextLo);
        const committedN = c.committedSeen.reduce((n, [a, b]) => n + b - a + 1, 0);
        return {
          cut: c.cut,
          cutAfterReadyS: Math.round(c.afterReadyMs / 100) / 10,
          committedBeforeCut: committedN,
          delivered: ofBoot.filter((s) => s <= hi).length,
          // Committed but the cut came before its commit line reached the host.
          deliveredBeyondLastSeenCommit: ofBoot.filter((s) => s > hi).length,
          duplicated: ofBoot.filter((s) => (consumer.seen.get(s) ?? 0) > 1).length,
          // Uncommitted at the cut: made after the last commit the host saw (at 10 Hz).
          lostAtMostMs: c.lastCommitAgeMs,
          lostAtMostRecords: Math.ceil(c.lastCommitAgeMs / 100),
        };
      });
      console.log(JSON.stringify({ measure: 'power cuts', cuts: table }));
      for (const row of table) expect(row.delivered).toBe(row.committedBeforeCut);
      // Numbers never repeat: each boot numbers above everything before it, and a record seen twice is the same record in a whole re-sent packet.
      // (A cut before a boot's first commit line reached the host leaves that boot nothing to compare.)
      for (let i = 1; i < cuts.length; i++) {
        if (cuts[i].committedSeen.length === 0) continue;
        expect(cuts[i].committedSeen[0][0]).toBeGreaterThan(
          Math.max(...cuts.slice(0, i).flatMap((c) => c.committedSeen.map(([, b]) => b))),
        );
      }
      expect(consumer.reused).toEqual([]);
      expect(consumer.duplicatesAreWholePackets()).toBe(true);
      expect(consumer.invalid).toEqual([]);
      // A boot, a ride and the cut take under two minutes under software emulation; then the backlog drains.
    },
    CUTS * 120_000 + 600_000,
  );
});

describe('the console as a VM (qemu): the board behind a USB serial adapter, unplugged mid-ride', () => {
  const board = new SocketBoard();
  let vm: Vm;

  beforeAll(async () => {
    await freshBroker();
    vm = Vm.create({ name: 'bike-vm-usb', image: consoleImage(), config: vmConfig('bike-vm-usb'), prepare: addUdevProbe });
  });

  afterAll(async () => {
    board.close();
    await vm?.destroy();
  });

  it('the ttyUSB node and /dev/flywheel disappear and return with the adapter; the agent reopens and records flow again', async () => {
    await vm.boot();
    const ready = await vm.waitJournal(isReady, 'READY without the board', 600_000);
    console.log(JSON.stringify({ measure: 'VM boot to READY, no board plugged in', bootToReadyMs: ready.at - vm.bootStartedAt }));
    // The agent did not wait for the board's device unit (its job times out only after 90 s).
    expect(vm.journal.some((l) => /Timed out waiting for device dev-flywheel/.test(l.text))).toBe(false);
    // Plug the adapter in: qemu's usb-serial (an FTDI 0403:6001) on the xHCI bus, the board on its chardev.
    await board.connect(vm.usbSocket, SEED);
    let from = vm.journal.length;
    await vm.qmp('device_add', { driver: 'usb-serial', id: 'flyusb', chardev: 'usbboard', bus: 'xhci.0' });
    await vm.waitJournal((l) => /bike-probe.*tty add ttyUSB\d+ .*\/dev\/flywheel/.test(l.text), 'ttyUSB with /dev/flywheel', 120_000, from);
    await vm.waitJournal((l) => l.json?.msg === 'link open', 'the agent opening the adapter', 120_000, from);
    await waitFor(() => consumer.seen.size >= 50, 'records through the USB adapter', 300_000, 200);
    // Unplugged mid-ride.
    const before = consumer.seen.size;
    from = vm.journal.length;
    const unpluggedAt = Date.now();
    await vm.qmp('device_del', { id: 'flyusb' });
    const gone = await vm.waitJournal((l) => /bike-probe.*tty remove ttyUSB\d+/.test(l.text), 'the ttyUSB node removed', 120_000, from);
    const noticed = await vm.waitJournal(
      (l) => typeof l.json?.msg === 'string' && /^link (waiting|closed)$/.test(l.json.msg),
      'the agent noticing',
      120_000,
      from,
    );
    await new Promise((r) => setTimeout(r, 5000));
    // Plugged back in.
    from = vm.journal.length;
    const repluggedAt = Date.now();
    await vm.qmp('device_add', { driver: 'usb-serial', id: 'flyusb', chardev: 'usbboard', bus: 'xhci.0' });
    const back = await vm.waitJournal(
      (l) => /bike-probe.*tty add ttyUSB\d+ .*\/dev\/flywheel/.test(l.text),
      '/dev/flywheel back',
      120_000,
      from,
    );
    const reopened = await vm.waitJournal((l) => l.json?.msg === 'link open', 'the agent reopening', 120_000, from);
    await waitFor(() => consumer.seen.size >= before + 100, 'records again after the replug', 300_000, 200);
    console.log(
      JSON.stringify({
        measure: 'USB unplug',
        nodeGoneAfterMs: gone.at - unpluggedAt,
        agentNoticedAfterMs: noticed.at - unpluggedAt,
        agentState: noticed.json?.msg,
        nodeBackAfterMs: back.at - repluggedAt,
        agentReopenedAfterMs: reopened.at - repluggedAt,
        recordsBefore: before,
        recordsAfter: consumer.seen.size,
      }),
    );
    expect(consumer.invalid).toEqual([]);
    expect(consumer.reused).toEqual([]);
  });
});
