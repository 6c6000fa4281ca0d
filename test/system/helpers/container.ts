/**
 * The console booted as a container: systemd-nspawn with systemd as PID 1 on
 * an overlay of the console image, so every test starts from the image as
 * built and keeps its own changes (and its disk across "reboots").
 *
 * - Device policy: nspawn enforces a unit's DevicePolicy only on the unified
 *   cgroup hierarchy and with bpf() allowed to the container's systemd.
 * - The network is the host's (no --private-network): the broker and the
 *   bundle server on 127.0.0.1 are reachable as on a bike's LAN.
 * - A board pty from the host is bound in as /dev/flywheel.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand, type RunResult } from './command.js';
import type { ConsoleImage } from './image.js';
import { mountOverlay, unmountOverlay, WORK, writeAgentConfig } from './overlay.js';

export type { RunResult } from './command.js';

export interface ContainerOptions {
  name: string;
  image: ConsoleImage;
  /** The agent's /etc/bike-telemetry/config.json. */
  config: Record<string, unknown>;
  /** A host pty bound in as /dev/flywheel. */
  board?: string;
}

export class Container {
  readonly dir: string;
  readonly merged: string;
  private proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  /** Host pid of the container's systemd. */
  initPid = 0;
  /** When the last boot started (ms, host clock). */
  bootStartedAt = 0;
  boots = 0;
  readonly consoleLog: string;

  private constructor(readonly o: ContainerOptions) {
    this.dir = join(WORK, `${o.name}-${process.pid}`);
    this.merged = join(this.dir, 'merged');
    this.consoleLog = join(this.dir, 'console.log');
  }

  /** Mount an overlay of the image, write the configuration, boot. */
  static create(o: ContainerOptions): Promise<Container> {
    const c = new Container(o);
    mountOverlay(o.image.root, c.dir);
    c.writeConfig(o.config);
    return Promise.resolve(c);
  }

  /** The agent's configuration, as an installer would leave it (root:bike-telemetry 0640). */
  writeConfig(config: Record<string, unknown>): void {
    writeAgentConfig(this.merged, config);
  }

  async boot(): Promise<void> {
    if (this.proc) throw new Error('already running');
    const args = [
      '-b',
      '-D',
      this.merged,
      '--register=no',
      '--keep-unit',
      `--machine=${this.o.name}`,
      '--console=read-only',
      '--system-call-filter=bpf',
    ];
    if (this.o.board) args.push(`--bind=${this.o.board}:/dev/flywheel`);
    const out = openSync(this.consoleLog, 'a');
    this.bootStartedAt = Date.now();
    this.boots++;
    const p = spawn('systemd-nspawn', args, {
      stdio: ['ignore', out, out],
      env: { ...process.env, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' },
    });
    closeSync(out);
    this.proc = p;
    this.exited = new Promise((r) => p.once('exit', () => r()));
    this.initPid = 0;
    const deadline = Date.now() + 60_000;
    while (!this.initPid) {
      if (p.exitCode !== null) throw new Error(`systemd-nspawn exited ${p.exitCode}: ${this.console().slice(-2000)}`);
      if (Date.now() > deadline) throw new Error('the container did not start systemd in 60 s');
      this.initPid = findInit(p.pid ?? 0);
      if (!this.initPid) await sleep(50);
    }
    // systemd answers on its private socket once it is up.
    while ((await this.run(['systemctl', 'is-system-running'])).stdout.trim() === '') {
      if (Date.now() > deadline) throw new Error(`systemd in the container did not answer: ${this.console().slice(-2000)}`);
      await sleep(200);
    }
  }

  console(): string {
    return existsSync(this.consoleLog) ? readFileSync(this.consoleLog, 'utf8') : '';
  }

  /** A command inside the running container (its namespaces and root), as root. */
  run(cmd: string[], input?: string): Promise<RunResult> {
    if (!this.initPid) return Promise.resolve({ status: null, stdout: '', stderr: 'not running', ms: 0 });
    return runCommand('nsenter', ['-t', String(this.initPid), '-m', '-u', '-i', '-n', '-p', '-r', '-w', '--', ...cmd], { input });
  }

  async sh(script: string): Promise<RunResult> {
    return this.run(['/bin/sh', '-c', script]);
  }

  /** `systemctl show` properties of a unit. */
  async show(unit: string, props: string[]): Promise<Record<string, string>> {
    const r = await this.run(['systemctl', 'show', unit, `--property=${props.join(',')}`]);
    const out: Record<string, string> = {};
    for (const line of r.stdout.split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
    }
    return out;
  }

  /** Wait until a unit is active and running (for Type=notify: READY=1 came); returns when (host ms). */
  async waitActive(
    unit: string,
    timeoutMs = 120_000,
    pred: (s: Record<string, string>) => boolean = () => true,
  ): Promise<Record<string, string>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.show(unit, [
        'ActiveState',
        'SubState',
        'NRestarts',
        'MainPID',
        'Result',
        'StatusText',
        'ExecMainStartTimestampMonotonic',
        'ActiveEnterTimestampMonotonic',
        'WatchdogTimestampMonotonic',
      ]);
      if (s.ActiveState === 'active' && s.SubState === 'running' && pred(s)) return s;
      if (Date.now() > deadline)
        throw new Error(`${unit} not active in ${timeoutMs} ms: ${JSON.stringify(s)}\n${(await this.journal(unit)).slice(-3000)}`);
      await sleep(100);
    }
  }

  async journal(unit: string, extra: string[] = []): Promise<string> {
    return (await this.run(['journalctl', '--no-pager', '-u', unit, ...extra])).stdout;
  }

  /** An orderly shutdown (SIGTERM to nspawn powers the container off). */
  async poweroff(timeoutMs = 60_000): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return void (this.proc = null);
    p.kill('SIGTERM');
    const t = setTimeout(() => this.killNow(), timeoutMs);
    await this.exited;
    clearTimeout(t);
    this.proc = null;
    this.initPid = 0;
  }

  /** Killed at once: SIGKILL to the container's PID 1 ends every process in it. */
  async kill(): Promise<void> {
    this.killNow();
    await this.exited;
    this.proc = null;
    this.initPid = 0;
  }

  private killNow(): void {
    if (this.initPid) {
      try {
        process.kill(this.initPid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    this.proc?.kill('SIGKILL');
  }

  unmount(): void {
    unmountOverlay(this.dir);
  }

  /** The whole journal, kept beside the console log for a post-mortem (the folder stays until the next run). */
  async saveJournal(): Promise<void> {
    if (!this.initPid) return;
    writeFileSync(join(this.dir, 'journal.txt'), (await this.run(['journalctl', '--no-pager', '-o', 'short-precise'])).stdout);
  }

  async destroy(): Promise<void> {
    await this.saveJournal().catch(() => undefined);
    await this.poweroff(20_000);
    this.unmount();
  }

  /** A file of the container's disk, read from the host. */
  read(path: string): string {
    return readFileSync(join(this.merged, path), 'utf8');
  }

  readlink(path: string): string {
    return readlinkSync(join(this.merged, path));
  }
}

/** The host pid of the container's PID 1: the descendant of systemd-nspawn whose pid in its namespace is 1. */
function findInit(nspawnPid: number): number {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // the process went away
    }
  }
  const queue = [...(children.get(nspawnPid) ?? [])];
  while (queue.length) {
    const pid = queue.shift()!;
    try {
      const ns = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      const inner = ns?.[1]!.trim().split(/\s+/);
      if (inner && inner.length > 1 && inner[inner.length - 1] === '1') return pid;
    } catch {
      continue;
    }
    queue.push(...(children.get(pid) ?? []));
  }
  return 0;
}
