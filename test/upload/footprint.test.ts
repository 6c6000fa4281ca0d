// The uploader's memory: mqtt.js's packet writer, left at its default, builds
// a table of 65,536 two-byte Buffers at the first packet it writes (6 MB of
// heap, found in a heap snapshot of the agent; peak RSS 88 -> 75 MB without it).
// The table lives in a module shared by every client in a process, so the
// check runs the uploader alone in a process of its own, against a real
// Mosquitto, over a real spool file.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/agent.js';
import { Broker } from '../helpers/broker.js';

const run = promisify(execFile);
const dist = (path: string): string => new URL(`../../dist/${path}`, import.meta.url).href;

/** The child: spool 500 records, upload them all, report the number table's size and the heap. */
const child = `
import { createRequire } from 'node:module';
import { createLogger } from ${JSON.stringify(dist('log/logger.js'))};
import { LiveRecord } from ${JSON.stringify(dist('metrics/record.js'))};
import { Spool } from ${JSON.stringify(dist('spool/spool.js'))};
import { Uploader } from ${JSON.stringify(dist('upload/uploader.js'))};
const [dir, url] = process.argv.slice(1);
const log = createLogger('silent');
const spool = Spool.open({ dir, deviceId: 'bike-fp-1', maxBytes: 1 << 26, synchronous: 'NORMAL', memoryRecords: 1000, log });
const rec = new LiveRecord();
for (let i = 0; i < 500; i++) { rec.tUs += 100_000; rec.powerW = 100 + i; spool.append(rec, 0); }
spool.flush();
const up = new Uploader(spool, { url, deviceId: 'bike-fp-1', topicPrefix: 'bike', agentVersion: 'test', sessionExpirySec: 60,
  keepaliveSec: 30, maxInflight: 8, maxRecordsPerPacket: 50, maxPacketBytes: 65536, rateBytesPerS: 0, backoffBaseMs: 200,
  backoffCapMs: 1000, deflate: false, pollMs: 50, log });
up.start();
const deadline = Date.now() + 20_000;
while (up.counters.recordsAcked < 500 && Date.now() < deadline) { await new Promise((r) => setTimeout(r, 50)); spool.flush(); }
// mqtt-packet as mqtt.js itself loads it (a nested copy would be another module).
const fromMqtt = createRequire(createRequire(import.meta.url).resolve('mqtt'));
const { cache } = fromMqtt('mqtt-packet/numbers.js');
// What the process loaded on the way: packages (by folder under node_modules) and Node's own modules.
const packageOf = (p) => { const parts = p.split('node_modules/').pop().split('/'); return parts[0].startsWith('@') ? parts[0] + '/' + parts[1] : parts[0]; };
const packages = [...new Set(Object.keys(fromMqtt.cache).filter((p) => p.includes('node_modules/')).map(packageOf))];
const builtins = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13));
console.log(JSON.stringify({ acked: up.counters.recordsAcked, packets: up.counters.packetsSent, numberTable: Object.keys(cache).length, packages, builtins }));
await up.stop();
spool.close();
`;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface ChildResult {
  acked: number;
  packets: number;
  numberTable: number;
  packages: string[];
  builtins: string[];
}

/** The child against a real Mosquitto of its own, over a new spool: what it printed. */
async function uploadInChild(): Promise<ChildResult> {
  const b = await Broker.start();
  cleanups.push(() => b.down());
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', child, tempDir('fp-spool-'), b.url], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    timeout: 30_000,
    // cbor-x's switch as an operator would find it: unset (a test in this worker may have loaded the agent's cbor module).
    env: { ...process.env, CBOR_NATIVE_ACCELERATION_DISABLED: undefined },
  });
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as ChildResult;
}

describe('uploader footprint', () => {
  it('uploads without building mqtt-packet’s 65,536-entry number table', async () => {
    const result = await uploadInChild();
    // Real traffic went through the writer (so a table would have been built by now)...
    expect(result.acked).toBe(500);
    expect(result.packets).toBeGreaterThanOrEqual(10);
    // ...and none was.
    expect(result.numberTable).toBe(0);
  });

  it('loads only the transport it uses: no WebSocket, SOCKS or TLS for mqtt://, no worker timers, no native CBOR extractor', async () => {
    const result = await uploadInChild();
    expect(result.acked).toBe(500);
    // mqtt.js's client and packet codec did the work...
    expect(result.packages).toEqual(expect.arrayContaining(['mqtt', 'mqtt-packet', 'cbor-x']));
    // ...without what connect() loads for other transports, the browser's timers, or cbor-x's native string extractor.
    for (const p of ['ws', 'socks', 'ip-address', 'smart-buffer', 'worker-timers-broker', '@babel/runtime', 'cbor-extract'])
      expect(result.packages).not.toContain(p);
    for (const m of ['tls', 'http', 'https']) expect(result.builtins).not.toContain(m);
  });
});
