#!/usr/bin/env node
// A flywheel-board firmware update at a real line rate: the simulated board
// with its bootloader (dist/sim/bootloader-board.js) on a pty whose
// console-to-board bytes are paced as a UART at --baud delivers them (8N1:
// baud / 10 bytes a second), flash erase and program times included; the
// agent as installed runs the update (`board update --detach`). Prints one
// JSON line: the image's bytes per second over the transfer (first chunk in
// to last chunk written) as a share of the line rate, and the whole update
// (accepted to confirmed) the same way.
//   node scripts/bench/board-update.js [--kib 256] [--baud 115200]
import { spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { numberArg } from './args.js';
import { buildImage } from '../../dist/firmware/image.js';
import { loadCalibration } from '../../dist/metrics/calibration.js';
import { BootloaderBoard, simFirmwareImage } from '../../dist/sim/bootloader-board.js';
import { SimRunner } from '../../dist/sim/runner.js';
import { CHUNK_HEADER } from '../../dist/protocol/fwp/fwu.js';

const kib = numberArg('--kib', 256);
const baud = numberArg('--baud', 115200);
const bin = fileURLToPath(new URL('../../bin/bike-telemetry.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'bench-board-update-'));
const size = kib * 1024;
const lineBytesPerS = baud / 10;

const board = new BootloaderBoard(
  loadCalibration('sim-bike-v1'),
  { name: 'idle', loop: true, segments: [{ durationS: 60, cadenceRpm: 0, resistancePct: 20, hrBpm: 0 }] },
  { flashFile: join(dir, 'flash.bin'), boardModel: 1 },
);
const runner = new SimRunner({ board, tickMs: 5, lineBytesPerS });
const path = await runner.startOnPty(join(dir, 'pty'), baud);

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
writeFileSync(join(dir, 'fw.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
const image = join(dir, 'image.fwimg');
writeFileSync(
  image,
  buildImage(
    simFirmwareImage(size, 0, 7),
    { boardModel: 1, version: '2.0.0' },
    privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    'bench',
  ),
);
const config = join(dir, 'config.json');
writeFileSync(
  config,
  JSON.stringify({
    serial: { path, baudRate: baud },
    dataDir: join(dir, 'data'),
    mqtt: { enabled: false },
    log: { records: 'none', statsIntervalS: 0 },
    api: { socketPath: join(dir, 'api.sock') },
    board: { update: { trustedKeys: [{ id: 'bench', publicKeyFile: join(dir, 'fw.pub') }], idleS: 0 } },
  }),
);
const agent = spawn(process.execPath, [bin, 'run', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'] });
let log = '';
agent.stdout.on('data', (d) => (log += d.toString()));
const until = async (cond, what, ms) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await sleep(2);
  }
};
await until(() => log.includes('"board hello"') || log.includes('"board booted"'), 'the board hello', 20_000);

const t0 = performance.now();
const sub = spawnSync(process.execPath, [bin, 'board', 'update', image, '--detach', '-c', config], { encoding: 'utf8' });
if (sub.status !== 0) throw new Error(`bench: board update exited ${sub.status}: ${sub.stderr}`);
await until(() => board.fwu.chunkBytes > 0, 'the first chunk', 30_000);
const tFirst = performance.now();
await until(() => board.fwu.next >= size, 'the whole image', 600_000);
const tLast = performance.now();
await until(() => board.fwu.meta.xfer.state === 4, 'the confirm', 60_000);
const tDone = performance.now();

const maxChunk = 240;
// A full chunk on the wire: COBS code byte, header 3, chunk header, data, CRC 2, delimiter (back to back,
// each frame's delimiter is the next one's leading delimiter).
const wirePerChunk = 1 + 3 + CHUNK_HEADER + maxChunk + 2 + 1;
// From the first chunk's first byte on the line (it was in when the board counted it).
const transferS = (tLast - tFirst) / 1000 + wirePerChunk / lineBytesPerS;
const totalS = (tDone - t0) / 1000;
console.log(
  JSON.stringify({
    bench: 'board-update',
    baud,
    imageBytes: size,
    lineBytesPerS,
    transferS: Number(transferS.toFixed(2)),
    imageBytesPerS: Math.round(size / transferS),
    lineRatePercent: Number(((size / transferS / lineBytesPerS) * 100).toFixed(1)),
    totalS: Number(totalS.toFixed(2)),
    totalLineRatePercent: Number(((size / totalS / lineBytesPerS) * 100).toFixed(1)),
    framingCeilingPercent: Number(((maxChunk / wirePerChunk) * 100).toFixed(1)),
    chunkBytesSentPerImageByte: Number((board.fwu.chunkBytes / size).toFixed(3)),
    window: 8,
    maxChunk,
  }),
);
agent.kill('SIGTERM');
await runner.stop();
board.close();
