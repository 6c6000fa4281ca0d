/**
 * Limits the cloud sets for the fleet (retained `<prefix>/fleet/limits`) or
 * for one bike (retained `<prefix>/<device>/limits`, which overrides the
 * fleet's field by field): the upload rate, the backlog drain rate and the
 * reconnect backoff base. An absent, emptied or invalid message leaves the
 * configured value in force; an invalid one is logged and reported.
 *
 *   {"v": 1, "uploadBytesPerS": 20000, "drainBytesPerS": 8000, "backoffBaseMs": 5000}
 */
import { issuesText } from '../util/zod-issues.js';
import { LimitsMessageSchema, type LimitsMessage } from '../contracts/mqtt-inbound.js';
import type { LimitsInForce } from '../contracts/health.js';

const FIELDS = ['uploadBytesPerS', 'drainBytesPerS', 'backoffBaseMs'] as const;

export class ServerLimits {
  private fleet: LimitsMessage | null = null;
  private device: LimitsMessage | null = null;

  constructor(private readonly config: { uploadBytesPerS: number; drainBytesPerS: number; backoffBaseMs: number }) {}

  /** A configured value changed at run time (a signed command); the cloud's limits still override it. */
  setConfig(field: (typeof FIELDS)[number], value: number): void {
    this.config[field] = value;
  }

  /** A message arrived on the fleet or device topic (empty: the retained message was cleared). Returns an error or null. */
  set(scope: 'fleet' | 'device', payload: Buffer): string | null {
    if (payload.length === 0) {
      if (scope === 'fleet') this.fleet = null;
      else this.device = null;
      return null;
    }
    let json: unknown;
    try {
      json = JSON.parse(payload.toString('utf8'));
    } catch {
      return `${scope} limits: not JSON; keeping the limits in force`;
    }
    const r = LimitsMessageSchema.safeParse(json);
    if (!r.success) return `${scope} limits: ${issuesText(r.error, '(message)')}; keeping the limits in force`;
    if (scope === 'fleet') this.fleet = r.data;
    else this.device = r.data;
    return null;
  }

  current(): LimitsInForce {
    const out = {
      ...this.config,
      source: { uploadBytesPerS: 'config', drainBytesPerS: 'config', backoffBaseMs: 'config' },
    } as LimitsInForce;
    for (const f of FIELDS) {
      const d = this.device?.[f];
      const fl = this.fleet?.[f];
      if (d !== undefined) {
        out[f] = d;
        out.source[f] = 'device';
      } else if (fl !== undefined) {
        out[f] = fl;
        out.source[f] = 'fleet';
      }
    }
    return out;
  }
}
