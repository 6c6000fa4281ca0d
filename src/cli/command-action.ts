/**
 * How a command's action runs: its module imported only then (`--help` and
 * `status` must not pay for the agent's pipeline), V8's optimising compiler
 * off for the quick ones, and stdout closing early ending it quietly.
 */

/** What a command is, for how it runs. */
export interface ActionKind {
  /**
   * It answers and exits within moments (`ports`, `spool`, `ride list`,
   * `board info`; `status` decides for itself, see withoutOptimisingCompiler).
   */
  quick?: boolean;
  /** A service (`run`, `updater`): its JSON log lines go to fd 1 through the logger, not Node's stdout stream. */
  service?: boolean;
}

/** The action named `name` of the module `load` imports, imported when it runs. */
export function lazy<M, K extends keyof M>(load: () => Promise<M>, name: K, kind: ActionKind = {}): (...args: unknown[]) => Promise<void> {
  return async (...args) => {
    if (!kind.service) endQuietlyWhenStdoutCloses();
    if (kind.quick) await withoutOptimisingCompiler();
    const action = (await load())[name] as (...a: unknown[]) => void | Promise<void>;
    await action(...args);
  };
}

/**
 * V8's optimising compiler off, before a quick command's modules load.
 *
 * In such a run the compiler optimised a few functions, among them Node's own
 * URL-to-path conversion, made hot by the ES module loader resolving the
 * imports, and paging in the compiler's code for them cost more memory than
 * anything the command does: `status` with the agent down peaked at 50.5 MB
 * with it and 47.0 MB without, `spool`, `ride list` and `board info` 3.4-3.6
 * MB less, `ports` 4.7, in the same time (docs/performance.md). `status` with
 * the agent running optimises nothing and is left alone (loading `node:v8` to
 * say so would cost it 0.5 MB): it calls this only when it must check the
 * configuration itself. The agent (`run`) and every command that runs for
 * long or moves many records keep the compiler.
 */
export async function withoutOptimisingCompiler(): Promise<void> {
  (await import('node:v8')).setFlagsFromString('--no-opt');
}

/**
 * A reader that stops early closes the pipe (`spool export | head`, `ride
 * list | head -3`, `less` quit before the end): the command then ends at
 * once and quietly, as Unix tools do (they die of SIGPIPE, which Node
 * ignores), instead of dying on EPIPE with a stack trace and exit code 1.
 * The exit code is the one the command had set by then, else 0: the reader
 * had what it wanted.
 */
function endQuietlyWhenStdoutCloses(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit();
    throw err;
  });
}
