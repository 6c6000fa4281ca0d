#!/usr/bin/env node
// Frames per second through decode + ring buffer + 10 Hz engine on one core,
// and GC events during the measured run. Prints one JSON line.
// Usage: node scripts/bench/hotpath.js [--frames N]   (needs `npm run build`)
import { measureHotPath } from '../../dist/bench/hotpath.js';
import { numberArg } from './args.js';

const frames = numberArg('--frames', 2_000_000);
const r = await measureHotPath(frames, 200_000);
console.log(
  JSON.stringify({
    bench: 'hotpath',
    protocol: 'fwp',
    frames: r.frames,
    records: r.records,
    framesPerS: r.framesPerS,
    nsPerFrame: r.nsPerFrame,
    gcEvents: r.gcEvents,
    heapDeltaBytes: r.heapDeltaBytes,
    node: process.version,
  }),
);
