/** scripts/install into a folder, and the units it lays out checked by systemd's own tools. */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/agent.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const version = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const install = (root: string, ...args: string[]) =>
  spawnSync('bash', [join(REPO, 'scripts/install'), '--root', root, ...args], { encoding: 'utf8' });

describe('scripts/install --root', () => {
  it('lays out the version, the current symlink, the command, the config, the unit and the udev rule; a second run keeps the config', () => {
    const root = tempDir('install-');
    const r = install(root, '--device-id', 'bike-test-7');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`done: ${root}/opt/bike-telemetry/current -> versions/${version}`);
    const opt = join(root, 'opt/bike-telemetry');
    expect(readlinkSync(join(opt, 'current'))).toBe(`versions/${version}`);
    // An installed version is confirmed: the updater's unit runs from `stable`.
    expect(readlinkSync(join(opt, 'stable'))).toBe(`versions/${version}`);
    expect(readFileSync(join(root, 'etc/modules-load.d/bike-telemetry.conf'), 'utf8')).toMatch(/^usbserial$/m);
    for (const f of [
      'bin/bike-telemetry.js',
      'dist/cli/main.js',
      'package.json',
      'node_modules/better-sqlite3',
      'firmware-protocol/calibration/peloton-v1.json',
    ]) {
      expect(existsSync(join(opt, 'current', f)), f).toBe(true);
    }
    expect(readlinkSync(join(root, 'usr/local/bin/bike-telemetry'))).toBe('/opt/bike-telemetry/current/bin/bike-telemetry.js');
    // The installed agent runs.
    const v = spawnSync(process.execPath, [join(opt, 'current/bin/bike-telemetry.js'), '--version'], { encoding: 'utf8' });
    expect(v.status).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const conf = join(root, 'etc/bike-telemetry/config.json');
    expect(JSON.parse(readFileSync(conf, 'utf8'))).toMatchObject({
      device: { id: 'bike-test-7' },
      serial: { path: '/dev/flywheel' },
      dataDir: '/var/lib/bike-telemetry',
    });
    expect(readFileSync(join(root, 'etc/systemd/system/bike-telemetry.service'), 'utf8')).toContain('Type=notify');
    expect(readFileSync(join(root, 'etc/systemd/system/bike-telemetry-updater.service'), 'utf8')).toContain(
      'ReadWritePaths=/opt/bike-telemetry',
    );
    expect(readFileSync(join(root, 'etc/systemd/system/bike-telemetry-updater.path'), 'utf8')).toContain(
      'DirectoryNotEmpty=/var/lib/bike-telemetry/ota-offers',
    );
    expect(readFileSync(join(root, 'etc/udev/rules.d/90-bike-telemetry.rules'), 'utf8')).toMatch(/SYMLINK\+="flywheel".*TAG\+="systemd"/);
    // No leftovers from the staging or the symlink swap.
    expect(spawnSync('find', [opt, '-maxdepth', '2', '-name', '.*'], { encoding: 'utf8' }).stdout.trim()).toBe('');

    writeFileSync(conf, JSON.stringify({ device: { id: 'edited-by-hand' } }));
    const again = install(root);
    expect(again.status).toBe(0);
    expect(JSON.parse(readFileSync(conf, 'utf8'))).toEqual({ device: { id: 'edited-by-hand' } });
    expect(readlinkSync(join(opt, 'current'))).toBe(`versions/${version}`);
  });

  it('--board-uart names a UART of the tablet /dev/flywheel (the USB adapter line stays); a name that is not a tty is refused', () => {
    const root = tempDir('install-uart-');
    const r = install(root, '--board-uart', 'ttyS1');
    expect(r.status, r.stderr).toBe(0);
    const active = readFileSync(join(root, 'etc/udev/rules.d/90-bike-telemetry.rules'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('SUBSYSTEM=='));
    expect(active).toHaveLength(2);
    expect(active[1]).toMatch(/^SUBSYSTEM=="tty", KERNEL=="ttyS1", SYMLINK\+="flywheel"/);
    const bad = install(tempDir('install-uart-bad-'), '--board-uart', 'ttyS1;rm');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--board-uart takes a kernel tty name/);
  });

  it('refuses a source that is not built, and unknown options, with a reason', () => {
    const empty = tempDir('install-src-');
    const r = install(tempDir('install-'), '--source', empty);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/dist\/cli\/main.js is missing \(build first/);
    const u = install(tempDir('install-'), '--frobnicate');
    expect(u.status).toBe(2);
    expect(u.stderr).toMatch(/unknown option --frobnicate/);
  });

  it("refuses a release bundle for another CPU before touching anything; --foreign-arch builds another console's root", () => {
    // A bundle-shaped source whose manifest says arm64 (the check reads the manifest; the signature is the updater's business).
    const src = tempDir('install-arm-');
    for (const f of ['bin', 'dist', 'node_modules', 'package.json', 'systemd', 'firmware-protocol/calibration'])
      cpSync(join(REPO, f), join(src, f), { recursive: true, verbatimSymlinks: true });
    writeFileSync(
      join(src, 'manifest.json'),
      JSON.stringify({
        format: 1,
        name: 'bike-telemetry',
        version,
        platform: 'linux',
        arch: process.arch === 'arm64' ? 'x64' : 'arm64',
        nodeAbi: Number(process.versions.modules),
        files: {},
      }),
    );
    const root = tempDir('install-');
    const r = install(root, '--source', src);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^install: the bundle is built for linux-(arm64|x64) \(Node ABI \d+\), this console is linux-\w+ \(Node ABI \d+\): another CPU: build it with scripts\/release --arch/,
    );
    expect(existsSync(join(root, 'opt'))).toBe(false);
    const f = install(root, '--source', src, '--foreign-arch');
    expect(f.status, f.stderr).toBe(0);
    expect(readlinkSync(join(root, 'opt/bike-telemetry/current'))).toBe(`versions/${version}`);
    const onto = spawnSync('bash', [join(REPO, 'scripts/install'), '--foreign-arch', '--no-systemctl'], { encoding: 'utf8' });
    expect(onto.status).toBe(2);
    expect(onto.stderr).toMatch(/--foreign-arch goes with --root/);
  });
});

describe('the systemd units', () => {
  const unit = join(REPO, 'systemd/bike-telemetry.service');
  const updaterUnit = join(REPO, 'systemd/bike-telemetry-updater.service');
  const updaterPath = join(REPO, 'systemd/bike-telemetry-updater.path');

  it('pass systemd-analyze verify', () => {
    for (const u of [unit, updaterUnit, updaterPath]) {
      const r = spawnSync('systemd-analyze', ['verify', u], { encoding: 'utf8' });
      expect(r.stderr.trim(), u).toBe('');
      expect(r.status).toBe(0);
    }
  });

  it('the updater can write only the versions folder and the offer inbox, runs only when started (no resident process), and is rated 2.0 or lower too', () => {
    const text = readFileSync(updaterUnit, 'utf8');
    expect(text).toMatch(/^ProtectSystem=strict$/m);
    expect(text.match(/^ReadWritePaths=.*$/gm)).toEqual(['ReadWritePaths=/opt/bike-telemetry -/var/lib/bike-telemetry/ota-offers']);
    expect(text).toMatch(/^ExecStart=.* updater --once /m);
    // Started by the path unit when the inbox the agent writes is not empty.
    const path = readFileSync(updaterPath, 'utf8');
    expect(path).toMatch(/^DirectoryNotEmpty=\/var\/lib\/bike-telemetry\/ota-offers$/m);
    expect(path).toMatch(/^Unit=bike-telemetry-updater\.service$/m);
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', updaterUnit], { encoding: 'utf8' });
    const m = /Overall exposure level for bike-telemetry-updater.service: ([\d.]+)/.exec(r.stdout);
    expect(Number(m![1])).toBeLessThanOrEqual(2.0);
  });

  it('is hardened: systemd-analyze security rates its exposure 2.0 or lower ("OK")', () => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', unit], { encoding: 'utf8' });
    const m = /Overall exposure level for bike-telemetry.service: ([\d.]+) (\w+)/.exec(r.stdout);
    expect(m, r.stdout.slice(-500)).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(2.0);
    const text = readFileSync(unit, 'utf8');
    for (const line of [
      'Type=notify',
      'WatchdogSec=',
      'NotifyAccess=main',
      'User=bike-telemetry',
      'SupplementaryGroups=dialout',
      'StateDirectory=',
      'RuntimeDirectory=',
      'ProtectSystem=strict',
      'ProtectHome=yes',
      'PrivateTmp=yes',
      'NoNewPrivileges=yes',
      'MemoryHigh=',
      'MemoryMax=',
      'StartLimitBurst=',
      'Restart=',
    ]) {
      expect(text, line).toContain(line);
    }
    // V8 writes executable code: this one would break Node.
    expect(text).not.toMatch(/^MemoryDenyWriteExecute=yes/m);
  });
});
