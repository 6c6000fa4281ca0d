/** Helpers for the update tests: keys, bundles derived from one release, an HTTP server with Range, a supervisor. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { cpSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { buildManifest, signBundle, type Manifest } from '../../src/ota/manifest.js';
import type { Offer } from '../../src/ota/offer.js';
import { canonicalJson, type TrustedKey } from '../../src/signing/signature.js';

export interface Key {
  id: string;
  privateKeyPem: string;
  trusted: TrustedKey;
}

export function keypair(id: string): Key {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    id,
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    trusted: { id, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() },
  };
}

export interface Bundle {
  version: string;
  dir: string;
  tarball: string;
  sha256: string;
  size: number;
}

/**
 * A new bundle from an unpacked one: copied, its version set, `mutate` applied
 * (a deliberately broken build), re-manifested, signed, packed.
 */
export function deriveBundle(
  base: string,
  outDir: string,
  version: string,
  key: Key,
  mutate?: (dir: string) => void,
  spoolSchema = 2,
  manifestPatch: Partial<Manifest> = {},
): Bundle {
  const name = `bike-telemetry-${version}`;
  const dir = join(outDir, name);
  rmSync(dir, { recursive: true, force: true });
  cpSync(base, dir, { recursive: true, verbatimSymlinks: true });
  const pkgFile = join(dir, 'package.json');
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as Record<string, unknown>;
  pkg.version = version;
  writeFileSync(pkgFile, `${JSON.stringify(pkg, null, 2)}\n`);
  mutate?.(dir);
  rmSync(join(dir, 'manifest.json'), { force: true });
  rmSync(join(dir, 'manifest.sig'), { force: true });
  const fields = {
    version,
    platform: process.platform,
    arch: process.arch,
    nodeAbi: Number(process.versions.modules),
    spoolSchema,
    minSpoolSchema: 0,
    ...manifestPatch,
  };
  signBundle(dir, buildManifest(dir, fields), key.privateKeyPem, key.id);
  const tarball = join(outDir, `${name}.tar.gz`);
  const r = spawnSync('tar', ['-C', outDir, '-czf', tarball, name]);
  if (r.status !== 0) throw new Error(`tar: ${r.stderr.toString()}`);
  return { version, dir, tarball, sha256: createHash('sha256').update(readFileSync(tarball)).digest('hex'), size: statSync(tarball).size };
}

export function signOffer(offer: Offer, key: Key): string {
  const sig = sign(null, Buffer.from(canonicalJson(offer), 'utf8'), createPrivateKey(key.privateKeyPem)).toString('base64');
  return JSON.stringify({ offer, keyId: key.id, sig });
}

/** Serves files with Range support; can cut the first response of a file short (resume test). */
export class BundleServer {
  private server: Server | null = null;
  port = 0;
  readonly requests: Array<{ path: string; range: string | null }> = [];
  cutFirstAfterBytes: number | null = null;
  /** Serve this slowly (bytes per second), so a test can act while a download runs. */
  bytesPerS: number | null = null;

  constructor(private readonly files: Map<string, string>) {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const path = req.url ?? '';
      const range = req.headers.range ?? null;
      this.requests.push({ path, range });
      const file = this.files.get(path);
      if (!file) {
        res.writeHead(404).end();
        return;
      }
      const data = readFileSync(file);
      let start = 0;
      const m = range ? /^bytes=(\d+)-$/.exec(range) : null;
      if (m) start = Number(m[1]);
      const body = data.subarray(start);
      res.writeHead(m ? 206 : 200, {
        'content-length': body.length,
        ...(m ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
      });
      if (this.cutFirstAfterBytes !== null) {
        const cut = this.cutFirstAfterBytes;
        this.cutFirstAfterBytes = null;
        res.write(body.subarray(0, cut), () => res.destroy());
        return;
      }
      if (this.bytesPerS !== null) {
        const chunk = Math.max(1024, Math.floor(this.bytesPerS / 10));
        let at = 0;
        const timer = setInterval(() => {
          if (res.destroyed || at >= body.length) {
            clearInterval(timer);
            res.end();
            return;
          }
          res.write(body.subarray(at, at + chunk));
          at += chunk;
        }, 100);
        return;
      }
      res.end(body);
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as AddressInfo).port;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

/**
 * What systemd does for the agent's unit in these tests: runs
 * `<root>/current/bin/bike-telemetry.js run`, restarts it whenever it exits
 * (Restart=always), and keeps its pid in a file so the updater's restart
 * command can signal it.
 */
export class Supervisor {
  proc: ChildProcess | null = null;
  starts = 0;
  output = '';
  private stopped = false;

  constructor(
    private readonly root: string,
    private readonly config: string,
    readonly pidFile: string,
  ) {}

  start(): void {
    if (this.stopped) return;
    this.starts++;
    const p = spawn(process.execPath, [join(this.root, 'current/bin/bike-telemetry.js'), 'run', '-c', this.config], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = p;
    writeFileSync(this.pidFile, String(p.pid));
    p.stdout.on('data', (d: Buffer) => (this.output += d.toString()));
    p.stderr.on('data', (d: Buffer) => (this.output += d.toString()));
    p.on('exit', () => {
      if (this.proc === p) setTimeout(() => this.start(), 300);
    });
  }

  /** The command the updater runs to restart the agent. */
  get restartCommand(): string[] {
    return ['sh', '-c', `kill -TERM $(cat ${this.pidFile})`];
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const p = this.proc;
    this.proc = null;
    if (p && p.exitCode === null) {
      p.kill('SIGTERM');
      await new Promise((r) => p.once('exit', r));
    }
  }
}
