/**
 * One timer for the agent's periodic work (the spool's commit, the
 * uploader's poll, the link's silence check, health bookkeeping).
 *
 * Each timer of its own wakes the process on its own: five once-a-second
 * timers are five wake-ups a second, each paying the event loop's and V8's
 * entry cost on a tablet CPU. On one timer they share one wake-up, in a fixed
 * order (commit first, so the uploader sends what was just committed).
 */
interface Entry {
  name: string;
  everyMs: number;
  run: () => void;
  /** Time since the task last ran, counted in beats. */
  sinceMs: number;
}

export class Heartbeat {
  private readonly entries: Entry[] = [];
  private timer: NodeJS.Timeout | null = null;

  /**
   * @param periodMs the beat; a task runs at the first beat at or after its own period.
   * @param onError a task that throws is reported here and runs again at its next period.
   */
  constructor(
    readonly periodMs: number,
    private readonly onError: (task: string, err: unknown) => void,
  ) {
    if (!(periodMs > 0)) throw new RangeError(`heartbeat period must be positive, got ${periodMs}`);
  }

  /**
   * Run `run` every `everyMs` (rounded up to whole beats), in the order tasks
   * were added; `first` puts it before those already added (the serial read,
   * so the commit that follows holds what it read).
   */
  every(name: string, everyMs: number, run: () => void, first = false): void {
    const e = { name, everyMs, run, sinceMs: 0 };
    if (first) this.entries.unshift(e);
    else this.entries.push(e);
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(this.beat, this.periodMs);
    // Never what keeps the process alive: the agent's sockets and port do that.
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One beat (the timer's, or a test's). */
  readonly beat = (): void => {
    const entries = this.entries;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      e.sinceMs += this.periodMs;
      if (e.sinceMs < e.everyMs) continue;
      e.sinceMs = 0;
      try {
        e.run();
      } catch (err) {
        this.onError(e.name, err);
      }
    }
  };
}
