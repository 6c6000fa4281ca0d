/**
 * The command line as data: commands, their arguments and options declared
 * once, parsed with Node's own `util.parseArgs`, and the help printed from the
 * same declarations. It stands in for commander, whose thirty-odd kilobytes
 * of source, its `child_process` and its objects were compiled and kept by
 * every process the CLI starts, the agent's included (a megabyte of the
 * agent's peak RSS; docs/performance.md).
 *
 * What it accepts: `--name value`, `--name=value`, `-c value`, `-cvalue`,
 * boolean flags, `--` before arguments that start with a dash, `--help` or
 * `-h` on any command, `help [command...]`, `--version` or `-V` at the top.
 * A later occurrence of an option wins. A subcommand also sees the options
 * given to its parent before its name (`spool -c FILE export`) unless it
 * sets them itself.
 */
import { parseArgs } from 'node:util';
import { AgentError } from '../util/errors.js';

export interface OptionSpec {
  /** `-c, --config <file>`: an optional one-letter alias, the long name, and `<value>` when it takes one. */
  readonly flags: string;
  readonly description: string;
  /** Turns the text into the option's value; throws an Error whose message says what is wanted. */
  readonly parse?: (value: string) => unknown;
  readonly choices?: readonly string[];
  /** The value when the option is not given (shown in the help). */
  readonly default?: unknown;
  readonly required?: boolean;
  /** Accepted, not listed in the help (options one process passes to another). */
  readonly hidden?: boolean;
}

export interface ArgumentSpec {
  readonly name: string;
  readonly description: string;
}

/** The action gets the command's arguments in order, then its options (camelCase keys). */
export type Action = (...args: never[]) => void | Promise<void>;

export interface CommandSpec {
  readonly name: string;
  readonly description: string;
  /** Required positional arguments. */
  readonly args?: readonly ArgumentSpec[];
  readonly options?: readonly OptionSpec[];
  /** Absent: the command only groups subcommands. */
  readonly action?: Action;
  readonly commands?: readonly CommandSpec[];
}

export interface ProgramSpec extends CommandSpec {
  readonly version: string;
}

/** Wrong usage: the CLI prints the message (and `help`, when set, before it) and exits 2. */
export class UsageError extends AgentError<'cli_usage'> {
  constructor(
    message: string,
    /** The help of the command concerned, for a command that needs a subcommand and got none. */
    readonly help?: string,
  ) {
    super('cli_usage', message);
  }
}

/** What the command line asks for: run an action, or print a text (help, version) and exit 0. */
export type Invocation = { kind: 'run'; action: Action; args: unknown[] } | { kind: 'print'; text: string };

interface ParsedFlags {
  short?: string;
  long: string;
  /** `<file>`; absent for a boolean flag. */
  value?: string;
  /** The key in the options object: `--http-port` -> `httpPort`. */
  key: string;
}

const HELP: OptionSpec = { flags: '-h, --help', description: 'display help for command' };
const VERSION: OptionSpec = { flags: '-V, --version', description: 'output the version number' };

function parseFlags(flags: string): ParsedFlags {
  const m = /^(?:-([A-Za-z]), )?--([a-z][a-z0-9-]*)(?: (<[^>]+>))?$/.exec(flags);
  if (!m) throw new Error(`command-line declaration: bad option flags "${flags}"`);
  const long = m[2];
  const key = long.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  return { ...(m[1] ? { short: m[1] } : {}), long, ...(m[3] ? { value: m[3] } : {}), key };
}

/** Resolve `argv` (without node and the script) against the program. */
export function parseCommandLine(program: ProgramSpec, argv: readonly string[]): Invocation {
  // `help [command...]`: the help of that command.
  if (argv[0] === 'help') {
    const path: CommandSpec[] = [program];
    for (const name of argv.slice(1)) {
      const sub = path[path.length - 1].commands?.find((c) => c.name === name);
      if (!sub) throw new UsageError(`unknown command '${argv.slice(1).join(' ')}'`);
      path.push(sub);
    }
    return { kind: 'print', text: helpText(path) };
  }
  return resolve(program, [program], argv, {});
}

function resolve(
  program: ProgramSpec,
  path: readonly CommandSpec[],
  argv: readonly string[],
  inherited: Record<string, unknown>,
): Invocation {
  const cmd = path[path.length - 1];
  const root = path.length === 1;
  const specs = [...(cmd.options ?? []), HELP, ...(root ? [VERSION] : [])];
  const parsed = specs.map((s) => ({ spec: s, flags: parseFlags(s.flags) }));
  const config: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const { flags } of parsed)
    config[flags.long] = { type: flags.value ? 'string' : 'boolean', ...(flags.short ? { short: flags.short } : {}) };
  const { tokens } = parseArgs({ args: [...argv], options: config, strict: false, allowPositionals: true, tokens: true });

  // A command with subcommands: the first argument that names one hands the rest to it.
  if (cmd.commands?.length) {
    const at = tokens.find((t) => t.kind === 'positional' || t.kind === 'option-terminator');
    const sub = at?.kind === 'positional' ? cmd.commands.find((c) => c.name === at.value) : undefined;
    if (sub && at) {
      const own = options(program, path, parsed, tokens.slice(0, tokens.indexOf(at)));
      if (own.kind === 'print') return own;
      return resolve(program, [...path, sub], argv.slice(at.index + 1), { ...inherited, ...own.given });
    }
    if (at?.kind === 'positional' && !cmd.action)
      throw new UsageError(`unknown command '${at.value}'${suggestion(at.value, cmd.commands)}`);
  }
  const o = options(program, path, parsed, tokens);
  if (o.kind === 'print') return o;
  if (!cmd.action) throw new UsageError(root ? 'missing command' : `missing command after '${commandName(path.slice(1))}'`, helpText(path));

  const positionals = tokens.filter((t) => t.kind === 'positional').map((t) => t.value);
  const wanted = cmd.args ?? [];
  if (positionals.length < wanted.length) throw new UsageError(`missing argument <${wanted[positionals.length].name}>${seeHelp(path)}`);
  if (positionals.length > wanted.length) throw new UsageError(`unexpected argument '${positionals[wanted.length]}'${seeHelp(path)}`);
  for (const { spec, flags } of parsed) {
    if (spec.required && o.given[flags.key] === undefined)
      throw new UsageError(`required option '${spec.flags}' not given${seeHelp(path)}`);
  }
  // Options given to a parent count unless the command set its own.
  const values = { ...o.defaults, ...inherited, ...o.given };
  return { kind: 'run', action: cmd.action, args: [...positionals, values] };
}

type Tokens = ReturnType<typeof parseArgs>['tokens'] & object;

/** The options in `tokens`, checked: those given, and the defaults of the rest. */
function options(
  program: ProgramSpec,
  path: readonly CommandSpec[],
  parsed: readonly { spec: OptionSpec; flags: ParsedFlags }[],
  tokens: Tokens,
): { kind: 'options'; given: Record<string, unknown>; defaults: Record<string, unknown> } | { kind: 'print'; text: string } {
  const byLong = new Map(parsed.map((p) => [p.flags.long, p]));
  // Help and version win over any other mistake on the line, as people type them to find out.
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    if (t.name === 'help') return { kind: 'print', text: helpText(path) };
    if (t.name === 'version' && byLong.has('version')) return { kind: 'print', text: `${program.version}\n` };
  }
  const given: Record<string, unknown> = {};
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    const p = byLong.get(t.name);
    if (!p) throw new UsageError(`unknown option '${t.rawName}'${seeHelp(path)}`);
    const { spec, flags } = p;
    if (!flags.value) {
      if (t.inlineValue) throw new UsageError(`option '${spec.flags}' takes no value`);
      given[flags.key] = true;
      continue;
    }
    const value = t.value;
    // `--config --json`: parseArgs takes the next word as the value; an option of this command there means the value was forgotten.
    if (value === undefined || (!t.inlineValue && isOptionOf(value, byLong, parsed))) {
      throw new UsageError(`option '${spec.flags}' needs a value`);
    }
    given[flags.key] = convert(spec, value);
  }
  const defaults: Record<string, unknown> = {};
  for (const { spec, flags } of parsed) if (spec.default !== undefined) defaults[flags.key] = spec.default;
  return { kind: 'options', given, defaults };
}

function isOptionOf(word: string, byLong: ReadonlyMap<string, unknown>, parsed: readonly { flags: ParsedFlags }[]): boolean {
  if (word.startsWith('--')) return byLong.has(word.slice(2).split('=')[0]);
  return word.length >= 2 && word[0] === '-' && parsed.some((p) => p.flags.short === word[1]);
}

function convert(spec: OptionSpec, value: string): unknown {
  if (spec.choices && !spec.choices.includes(value)) {
    throw new UsageError(`option '${spec.flags}' must be one of ${spec.choices.join(', ')} (got "${value}")`);
  }
  if (!spec.parse) return value;
  try {
    return spec.parse(value);
  } catch (err) {
    throw new UsageError(`${(err as Error).message} (got "${value}")`);
  }
}

function commandName(path: readonly CommandSpec[]): string {
  return path.map((c) => c.name).join(' ');
}

function seeHelp(path: readonly CommandSpec[]): string {
  return ` (see ${commandName(path)} --help)`;
}

/** " (did you mean 'status'?)" for a typo of one or two letters. */
function suggestion(word: string, commands: readonly CommandSpec[]): string {
  let best: string | undefined;
  let bestD = 3;
  for (const c of commands) {
    const d = editDistance(word, c.name);
    if (d < bestD) [best, bestD] = [c.name, d];
  }
  return best ? ` (did you mean '${best}'?)` : '';
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length];
}

/** The help of the last command of `path`, as commander laid it out. */
export function helpText(path: readonly CommandSpec[], width = process.stdout.columns || 100): string {
  const cmd = path[path.length - 1];
  const root = path.length === 1;
  const usage = [commandName(path), '[options]'];
  if (cmd.commands?.length) usage.push('[command]');
  for (const a of cmd.args ?? []) usage.push(`<${a.name}>`);
  const sections: [string, [string, string][]][] = [];
  if (cmd.args?.length) sections.push(['Arguments', cmd.args.map((a) => [a.name, a.description])]);
  const opts = [...(root ? [VERSION] : []), ...(cmd.options ?? []).filter((o) => !o.hidden), HELP];
  sections.push(['Options', opts.map((o) => [o.flags, describe(o)])]);
  if (cmd.commands?.length) {
    const rows = cmd.commands.map((c): [string, string] => [commandUsage(c), c.description]);
    if (root) rows.push(['help [command]', 'display help for command']);
    sections.push(['Commands', rows]);
  }
  const term = Math.max(...sections.flatMap(([, rows]) => rows.map(([t]) => t.length)));
  const lines = [`Usage: ${usage.join(' ')}`, '', ...wrap(cmd.description, width, 0)];
  for (const [title, rows] of sections) {
    lines.push('', `${title}:`);
    for (const [t, d] of rows) {
      const body = wrap(d, width, term + 4);
      lines.push(`  ${t.padEnd(term)}  ${body[0] ?? ''}`.trimEnd(), ...body.slice(1));
    }
  }
  return `${lines.join('\n')}\n`;
}

function commandUsage(c: CommandSpec): string {
  const parts = [c.name];
  if (c.options?.some((o) => !o.hidden)) parts.push('[options]');
  if (c.commands?.length) parts.push('[command]');
  for (const a of c.args ?? []) parts.push(`<${a.name}>`);
  return parts.join(' ');
}

function describe(o: OptionSpec): string {
  const extra: string[] = [];
  if (o.choices) extra.push(`choices: ${o.choices.map((c) => `"${c}"`).join(', ')}`);
  if (o.default !== undefined) extra.push(`default: ${JSON.stringify(o.default)}`);
  return extra.length ? `${o.description} (${extra.join(', ')})` : o.description;
}

/** `text` in lines of at most `width` columns; lines after the first indented by `indent` (the first is placed by the caller). */
function wrap(text: string, width: number, indent: number): string[] {
  const room = Math.max(40, width - indent);
  const out: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > room) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  return out.map((l, i) => (i === 0 ? l : ' '.repeat(indent) + l));
}
