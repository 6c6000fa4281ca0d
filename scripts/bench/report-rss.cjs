// Preloaded by scripts/bench/cli.js into the measured command: its peak RSS, written at exit.
const { writeFileSync } = require('node:fs');
process.on('exit', () => writeFileSync(process.env.BENCH_RSS_FILE, String(process.resourceUsage().maxRSS)));
