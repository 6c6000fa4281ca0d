/** The last warnings and errors the agent logged, newest last; bounded. */
import type { RecentEntry } from '../contracts/health.js';

export class RecentLog {
  private readonly entries: RecentEntry[] = [];
  private readonly listeners = new Set<(e: RecentEntry) => void>();
  total = 0;

  constructor(private readonly capacity = 50) {}

  add(level: number, args: unknown[]): void {
    let fields: Record<string, unknown> = {};
    let msg = '';
    if (typeof args[0] === 'string') msg = args[0];
    else {
      if (args[0] && typeof args[0] === 'object') fields = plainFields(args[0] as Record<string, unknown>);
      if (typeof args[1] === 'string') msg = args[1];
    }
    const entry: RecentEntry = {
      time: new Date().toISOString(),
      level: level >= 60 ? 'fatal' : level >= 50 ? 'error' : 'warn',
      msg,
      fields,
    };
    this.entries.push(entry);
    if (this.entries.length > this.capacity) this.entries.shift();
    this.total++;
    for (const l of this.listeners) l(entry);
  }

  list(): RecentEntry[] {
    return [...this.entries];
  }

  last(): RecentEntry | null {
    return this.entries[this.entries.length - 1] ?? null;
  }

  onEntry(listener: (e: RecentEntry) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/**
 * The fields as JSON can carry them to API clients: an Error (logged as
 * `{ err }`, whose stack the journal keeps) becomes its type, code and
 * message; JSON.stringify would make it `{}`.
 */
function plainFields(f: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(f)) {
    if (v instanceof Error) {
      const code = (v as { code?: unknown }).code;
      out[k] = { type: v.name, message: v.message, ...(code !== undefined ? { code } : {}) };
    } else out[k] = v;
  }
  return out;
}
