// One run of `node <args>` for the CLI benchmarks (cli.js, backlog.js): wall time from spawning to
// exit, and the peak RSS the process reports at its exit (report-rss.cjs, preloaded into it).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const preload = fileURLToPath(new URL('./report-rss.cjs', import.meta.url));

/** Wall ms and peak RSS MB of one `node <args>`; `rssFile` is where the process writes its peak. */
export function timedNode(args, rssFile) {
  const t0 = process.hrtime.bigint();
  spawnSync(process.execPath, ['--require', preload, ...args], { stdio: 'ignore', env: { ...process.env, BENCH_RSS_FILE: rssFile } });
  return { wallMs: Number(process.hrtime.bigint() - t0) / 1e6, rssMB: Number(readFileSync(rssFile, 'utf8')) / 1024 };
}
