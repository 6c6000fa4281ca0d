/**
 * The console as a virtual machine (qemu, software emulation): the Debian
 * kernel and initrd from the image, its root as an ext4 disk with the host's
 * page cache bypassed (cache=none: what the guest did not flush is lost when
 * the qemu process is killed, as on a power cut), three 16550 UARTs (ttyS0
 * the console, ttyS1 the board's UART, ttyS2 the journal forwarded for the
 * host to read), an xHCI controller for the board's USB adapter, user-mode
 * networking (the host is 10.0.2.2) and QMP to plug devices.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync, openSync, closeSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConsoleImage } from './image.js';
import { mountOverlay, unmountOverlay, WORK, writeAgentConfig } from './overlay.js';

export interface JournalLine {
  /** Host clock when the line arrived (ms). */
  at: number;
  /** The agent's JSON log line, when the line is one. */
  json: Record<string, unknown> | null;
  text: string;
}

export interface VmOptions {
  name: string;
  image: ConsoleImage;
  config: Record<string, unknown>;
  /** Runs on the disk's root folder before the disk is made (as an installer on the bike would). */
  prepare?: (root: string) => void;
  diskMB?: number;
}

export class Vm {
  readonly dir: string;
  readonly disk: string;
  private proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  readonly boardSocket: string;
  readonly usbSocket: string;
  private readonly journalSocket: string;
  private readonly qmpSocket: string;
  /** Every journal line forwarded since the VM was made, across boots. */
  readonly journal: JournalLine[] = [];
  private journalConn: Socket | null = null;
  bootStartedAt = 0;
  boots = 0;

  private constructor(readonly o: VmOptions) {
    this.dir = join(WORK, `${o.name}-${process.pid}`);
    this.disk = join(this.dir, 'disk.ext4');
    this.boardSocket = join(this.dir, 'board.sock');
    this.usbSocket = join(this.dir, 'usb.sock');
    this.journalSocket = join(this.dir, 'journal.sock');
    this.qmpSocket = join(this.dir, 'qmp.sock');
  }

  /** The disk: an overlay of the image's root, changed for this VM, written into a fresh ext4 file. */
  static create(o: VmOptions): Vm {
    const vm = new Vm(o);
    const merged = mountOverlay(o.image.root, vm.dir);
    try {
      writeAgentConfig(merged, o.config);
      // The journal, forwarded to ttyS2 for the host; the console (ttyS0) keeps the kernel's lines.
      mkdirSync(join(merged, 'etc/systemd/journald.conf.d'), { recursive: true });
      writeFileSync(
        join(merged, 'etc/systemd/journald.conf.d/90-forward-ttyS2.conf'),
        '[Journal]\nForwardToConsole=yes\nTTYPath=/dev/ttyS2\nMaxLevelConsole=debug\n',
      );
      writeFileSync(join(merged, 'etc/fstab'), '/dev/vda / ext4 rw,errors=remount-ro 0 1\n');
      // A console boots fast without the package timers a bike never runs.
      for (const unit of ['apt-daily.timer', 'apt-daily-upgrade.timer', 'e2scrub_all.timer', 'fstrim.timer', 'getty@tty1.service']) {
        const link = join(merged, 'etc/systemd/system', unit);
        rmSync(link, { force: true });
        spawnSync('ln', ['-sfn', '/dev/null', link]);
      }
      o.prepare?.(merged);
      const size = `${o.diskMB ?? 2048}M`;
      const mk = spawnSync('mkfs.ext4', ['-q', '-F', '-L', 'bike-root', '-d', merged, vm.disk, size], { encoding: 'utf8' });
      if (mk.status !== 0) throw new Error(`mkfs.ext4 -d: ${mk.stderr}`);
    } finally {
      unmountOverlay(vm.dir);
    }
    rmSync(join(vm.dir, 'upper'), { recursive: true, force: true });
    rmSync(join(vm.dir, 'work'), { recursive: true, force: true });
    return vm;
  }

  get running(): boolean {
    return this.proc !== null && this.proc.exitCode === null;
  }

  /** Start qemu (a cold boot); the board's and the journal's sockets are listening when it returns. */
  async boot(): Promise<void> {
    if (this.running) throw new Error('already running');
    for (const s of [this.boardSocket, this.usbSocket, this.journalSocket, this.qmpSocket]) rmSync(s, { force: true });
    const o = this.o;
    const args = [
      '-machine',
      'q35',
      '-accel',
      'tcg,thread=multi',
      '-cpu',
      'max',
      '-smp',
      '2',
      '-m',
      '1024',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-kernel',
      o.image.kernel,
      '-initrd',
      o.image.initrd,
      '-append',
      'root=/dev/vda rw console=ttyS0,115200 init=/lib/systemd/systemd net.ifnames=0 quiet systemd.show_status=0',
      '-drive',
      `file=${this.disk},format=raw,if=virtio,cache=none,aio=threads`,
      '-netdev',
      'user,id=n0',
      '-device',
      'virtio-net-pci,netdev=n0',
      '-serial',
      `file:${join(this.dir, `console-${this.boots + 1}.log`)}`,
      '-chardev',
      `socket,id=board,path=${this.boardSocket},server=on,wait=off`,
      '-serial',
      'chardev:board',
      '-chardev',
      `socket,id=jlog,path=${this.journalSocket},server=on,wait=off`,
      '-serial',
      'chardev:jlog',
      '-chardev',
      `socket,id=usbboard,path=${this.usbSocket},server=on,wait=off`,
      '-device',
      'qemu-xhci,id=xhci',
      '-qmp',
      `unix:${this.qmpSocket},server=on,wait=off`,
    ];
    const log = openSync(join(this.dir, 'qemu.log'), 'a');
    this.bootStartedAt = Date.now();
    this.boots++;
    const p = spawn('qemu-system-x86_64', args, { stdio: ['ignore', log, log] });
    closeSync(log);
    this.proc = p;
    this.exited = new Promise((r) => p.once('exit', () => r()));
    const deadline = Date.now() + 30_000;
    while (![this.boardSocket, this.journalSocket, this.qmpSocket, this.usbSocket].every((s) => existsSync(s))) {
      if (p.exitCode !== null)
        throw new Error(`qemu exited ${p.exitCode}: ${readFileSync(join(this.dir, 'qemu.log'), 'utf8').slice(-2000)}`);
      if (Date.now() > deadline) throw new Error('qemu did not open its sockets');
      await sleep(20);
    }
    this.readJournal();
  }

  /** One connection for the life of this qemu: a one-shot reader or writer loses data. */
  private readJournal(): void {
    const c = connect(this.journalSocket);
    this.journalConn = c;
    let buf = '';
    c.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      let i: number;
      while ((i = buf.search(/\r?\n/)) >= 0) {
        const text = buf.slice(0, i).replace(/\r$/, '');
        buf = buf.slice(i + 1).replace(/^\n/, '');
        const j = text.indexOf('{"level"');
        let json: Record<string, unknown> | null = null;
        if (j >= 0) {
          try {
            json = JSON.parse(text.slice(j)) as Record<string, unknown>;
          } catch {
            json = null;
          }
        }
        this.journal.push({ at: Date.now(), json, text });
      }
    });
    c.on('error', () => undefined);
  }

  /** The first journal line from `from` on that matches, waited for. */
  async waitJournal(pred: (l: JournalLine) => boolean, what: string, timeoutMs: number, from = 0): Promise<JournalLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.journal.length; i++) if (pred(this.journal[i])) return this.journal[i];
      if (!this.running) throw new Error(`qemu exited while waiting for ${what}`);
      if (Date.now() > deadline)
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${what}; last lines:\n${this.journal
            .slice(-15)
            .map((l) => l.text)
            .join('\n')}`,
        );
      await sleep(50);
    }
  }

  /** A QMP command; returns its result. */
  async qmp(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const c = connect(this.qmpSocket);
    const lines: Array<Record<string, unknown>> = [];
    let buf = '';
    c.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        lines.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
        buf = buf.slice(i + 1);
      }
    });
    const next = async (): Promise<Record<string, unknown>> => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const k = lines.findIndex((l) => 'return' in l || 'error' in l || 'QMP' in l);
        if (k >= 0) return lines.splice(0, k + 1)[k];
        if (Date.now() > deadline) throw new Error(`QMP ${command}: no answer`);
        await sleep(10);
      }
    };
    try {
      await next(); // greeting
      c.write(`${JSON.stringify({ execute: 'qmp_capabilities' })}\n`);
      await next();
      c.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
      const r = await next();
      if ('error' in r) throw new Error(`QMP ${command}: ${JSON.stringify(r.error)}`);
      return r.return;
    } finally {
      c.destroy();
    }
  }

  /** The power cord pulled: qemu killed at once; the disk keeps only what the guest flushed. */
  async powerCut(): Promise<void> {
    this.proc?.kill('SIGKILL');
    await this.exited;
    this.journalConn?.destroy();
    this.proc = null;
  }

  /** An orderly power-off (ACPI), or a cut after the timeout. */
  async shutdown(timeoutMs = 60_000): Promise<void> {
    if (!this.running) return;
    await this.qmp('system_powerdown').catch(() => undefined);
    const t = setTimeout(() => this.proc?.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(t);
    this.journalConn?.destroy();
    this.proc = null;
  }

  async destroy(): Promise<void> {
    await this.shutdown(30_000);
    writeFileSync(join(this.dir, 'journal.txt'), this.journal.map((l) => `${new Date(l.at).toISOString()} ${l.text}`).join('\n'));
    rmSync(this.disk, { force: true });
  }
}
