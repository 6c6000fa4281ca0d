// A private Mosquitto for a benchmark: a free port on 127.0.0.1, stopped with the process.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export async function startBroker(extraConfig = []) {
  const port = await new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  const dir = mkdtempSync(join(tmpdir(), 'bench-broker-'));
  writeFileSync(
    join(dir, 'm.conf'),
    [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', ...extraConfig, ''].join('\n'),
  );
  const proc = spawn('mosquitto', ['-c', join(dir, 'm.conf')], { stdio: 'ignore' });
  process.on('exit', () => proc.kill('SIGTERM'));
  for (let i = 0; ; i++) {
    const ok = await new Promise((r) => {
      const c = connect(port, '127.0.0.1', () => (c.destroy(), r(true)));
      c.on('error', () => r(false));
    });
    if (ok) break;
    if (i > 500) throw new Error('mosquitto did not start (is it installed?)');
    await sleep(20);
  }
  return { url: `mqtt://127.0.0.1:${port}`, stop: () => proc.kill('SIGTERM') };
}
