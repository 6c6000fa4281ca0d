/** A real Mosquitto for the tests, on a free port, started and stopped by the test. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from './agent.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export function mosquittoAvailable(): boolean {
  return spawnSync('mosquitto', ['-h'], { stdio: 'ignore' }).error === undefined;
}

export class Broker {
  private proc: ChildProcess | null = null;
  readonly dir = tempDir('mosquitto-');
  log = '';

  private constructor(
    readonly port: number,
    private readonly extra: string[],
  ) {}

  static async start(extraConfig: string[] = []): Promise<Broker> {
    const b = new Broker(await freePort(), extraConfig);
    await b.up();
    return b;
  }

  get url(): string {
    return `${this.extra.some((l) => l.startsWith('require_certificate')) ? 'mqtts' : 'mqtt'}://127.0.0.1:${this.port}`;
  }

  /** Start (or restart, on the same port) and wait until it accepts connections. */
  async up(): Promise<void> {
    const conf = join(this.dir, 'mosquitto.conf');
    writeFileSync(
      conf,
      [
        `listener ${this.port} 127.0.0.1`,
        'allow_anonymous true',
        // Run as root, mosquitto drops to its own user, which cannot read the tests' 0700 temp folders.
        ...(process.getuid?.() === 0 ? ['user root'] : []),
        ...(this.extra.some((l) => l.startsWith('persistence ')) ? [] : ['persistence false']),
        ...this.extra,
        '',
      ].join('\n'),
    );
    const proc = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout.on('data', (d: Buffer) => (this.log += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (this.log += d.toString()));
    this.proc = proc;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`mosquitto exited: ${this.log}`);
      const ok = await new Promise<boolean>((resolve) => {
        const c = connect(this.port, '127.0.0.1', () => (c.destroy(), resolve(true)));
        c.on('error', () => resolve(false));
      });
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${this.port}: ${this.log}`);
      await sleep(20);
    }
  }

  /** Stop it: SIGTERM saves persistent sessions (when configured), SIGKILL is a crash. */
  async down(signal: 'SIGTERM' | 'SIGKILL' = 'SIGKILL'): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill(signal);
    await exited;
  }

  /** Persistent sessions on disk, kept across down('SIGTERM') and up(). */
  static persistence(dir: string): string[] {
    return ['persistence true', `persistence_location ${dir}/`, 'autosave_interval 1'];
  }
}
