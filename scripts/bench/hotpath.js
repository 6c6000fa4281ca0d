#!/usr/bin/env node
// Frames per second through decode + ring buffer + 10 Hz engine on one core,
// and GC events during the measured run. Prints one JSON line.
// Usage: node scripts/bench/hotpath.js [--frames N] [--protocol fwp|peloton]   (needs `npm run build`)
import { measureHotPath, measurePelotonHotPath } from '../../dist/bench/hotpath.js';
import { numberArg } from './args.js';

const frames = numberArg('--frames', 2_000_000);
const i = process.argv.indexOf('--protocol');
const protocol = i > 0 ? process.argv[i + 1] : 'fwp';
if (protocol !== 'fwp' && protocol !== 'peloton') {
  console.error('--protocol must be fwp or peloton');
  process.exit(2);
}
const r = protocol === 'peloton' ? await measurePelotonHotPath(frames, 200_000) : await measureHotPath(frames, 200_000);
console.log(
  JSON.stringify({
    bench: 'hotpath',
    protocol,
    frames: r.frames,
    records: r.records,
    framesPerS: r.framesPerS,
    nsPerFrame: r.nsPerFrame,
    gcEvents: r.gcEvents,
    heapDeltaBytes: r.heapDeltaBytes,
    node: process.version,
  }),
);
