/**
 * For a command that answers and exits within moments (`status`, `ports`,
 * `spool`, `ride list`, `board info`): V8's optimising compiler is turned off
 * before the command's modules load.
 *
 * In such a run the compiler has one function to optimise, Node's own
 * URL-to-path conversion, made hot by the ES module loader resolving the
 * imports, and paging in the compiler's code for it costs more memory than
 * anything the command does: `status` with the agent down peaked at 50.5 MB
 * with it and 47.0 MB without, `spool` and `ride list` on a spool 3.6 MB less,
 * in the same time (docs/performance.md). Loading `node:v8` to say so costs
 * about 0.5 MB where nothing was optimised (`status` with the agent running).
 * The agent (`run`) and every command that runs for long or moves many
 * records keep the compiler.
 */
export async function withoutOptimisingCompiler(): Promise<void> {
  (await import('node:v8')).setFlagsFromString('--no-opt');
}
