// The Node flags the service is installed with: what systemd/bike-telemetry.service's
// ExecStart puts between `node` and the script. The benchmarks run the agent with
// them, and test/metrics/unit-flags.test.ts runs the hot path under them.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function unitNodeFlags() {
  const unit = readFileSync(fileURLToPath(new URL('../../systemd/bike-telemetry.service', import.meta.url)), 'utf8');
  const exec = /^ExecStart=\S*node((?:\s+--\S+)*)\s+\S*bike-telemetry\.js/m.exec(unit);
  if (!exec) throw new Error('systemd/bike-telemetry.service: no ExecStart running node found');
  return exec[1].split(/\s+/).filter(Boolean);
}
