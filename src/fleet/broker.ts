/** A private Mosquitto for the fleet simulator (the Debian binary), which it can stop and start for an outage. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class PrivateBroker {
  private proc: ChildProcess | null = null;
  private constructor(
    readonly port: number,
    private readonly conf: string,
  ) {}

  static async start(): Promise<PrivateBroker> {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const dir = mkdtempSync(join(tmpdir(), 'fleet-broker-'));
    const conf = join(dir, 'mosquitto.conf');
    const root = process.getuid?.() === 0 ? ['user root'] : [];
    // Persistent, so the consumer's session (and what is queued for it) survives an outage, as in a real deployment.
    writeFileSync(
      conf,
      [
        `listener ${port} 127.0.0.1`,
        'allow_anonymous true',
        'persistence true',
        `persistence_location ${dir}/`,
        'max_queued_messages 1000000',
        'max_inflight_messages 100',
        ...root,
        '',
      ].join('\n'),
    );
    const b = new PrivateBroker(port, conf);
    await b.up();
    return b;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    const p = spawn('mosquitto', ['-c', this.conf], { stdio: 'ignore' });
    this.proc = p;
    for (let i = 0; ; i++) {
      const ok = await new Promise<boolean>((r) => {
        const c = connect(this.port, '127.0.0.1', () => (c.destroy(), r(true)));
        c.on('error', () => r(false));
      });
      if (ok) return;
      if (p.exitCode !== null || i > 500) throw new Error('mosquitto did not start (is it installed? apt-get install mosquitto)');
      await sleep(20);
    }
  }

  /** An outage: the broker goes away (saving its sessions, as a maintained broker does). */
  async down(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null) return;
    p.kill('SIGTERM');
    await new Promise((r) => p.once('exit', r));
  }
}
