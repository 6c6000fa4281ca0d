/**
 * The link's state changes as the journal should read them: each change
 * said once. A retry loop that fails the same way (no board plugged in: the
 * device is missing every 0.1-5 s, forever) is one warning, then a summary
 * every `summaryEveryMs` while it lasts, and the attempts are counted in the
 * `link open` that ends it. The retries themselves (`opening`) are not
 * logged: their outcome is.
 */
import type { Logger } from '../log/logger.js';
import type { LinkState } from './serial-link.js';

export class LinkStateLog {
  private waitingReason: string | null = null;
  private failures = 0;
  private waitingSinceMs = 0;
  private lastSaidMs = 0;

  constructor(
    private readonly log: Logger,
    private readonly path: string,
    private readonly summaryEveryMs = 10 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  onState(state: LinkState, detail: { reason?: string; retryInMs?: number }): void {
    const t = this.now();
    if (state === 'opening') return;
    if (state === 'waiting') {
      const reason = detail.reason ?? 'unknown';
      this.failures++;
      if (this.failures === 1) this.waitingSinceMs = t;
      if (reason === this.waitingReason) {
        if (t - this.lastSaidMs >= this.summaryEveryMs) {
          this.lastSaidMs = t;
          this.log.warn(
            { link: 'waiting', path: this.path, reason, attempts: this.failures, sinceS: Math.round((t - this.waitingSinceMs) / 1000) },
            'link still waiting',
          );
        }
        return;
      }
      this.waitingReason = reason;
      this.lastSaidMs = t;
      this.log.warn({ link: 'waiting', path: this.path, reason, retryInMs: detail.retryInMs }, 'link waiting');
      return;
    }
    if (state === 'open') {
      const waited = this.failures > 0 ? { failedAttempts: this.failures, waitedS: Math.round((t - this.waitingSinceMs) / 1000) } : {};
      this.log.info({ link: 'open', path: this.path, ...waited }, 'link open');
      this.failures = 0;
      // The same failure after a spell of working is news again.
      this.waitingReason = null;
      return;
    }
    this.log.info({ link: state, path: this.path }, `link ${state}`);
  }
}
