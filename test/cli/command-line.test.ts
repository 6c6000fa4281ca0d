import { describe, expect, it } from 'vitest';
import { helpText, parseCommandLine, UsageError, type Invocation, type ProgramSpec } from '../../src/cli/command-line.js';

const calls: unknown[][] = [];
const record =
  (name: string) =>
  (...args: unknown[]): void => {
    calls.push([name, ...args]);
  };
const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 10) throw new Error('--limit must be an integer from 1 to 10');
  return n;
};

const program: ProgramSpec = {
  name: 'tool',
  description: 'a test program',
  version: '9.8.7',
  commands: [
    {
      name: 'run',
      description: 'run it',
      options: [
        { flags: '-c, --config <file>', description: 'configuration' },
        { flags: '--simulate', description: 'with the simulator' },
        { flags: '--records <mode>', description: 'records', choices: ['all', 'none'] },
        { flags: '--http-port <port>', description: 'port', parse: Number },
        { flags: '--with-parent', description: 'internal', hidden: true },
      ],
      action: record('run'),
    },
    {
      name: 'spool',
      description: 'the spool',
      options: [
        { flags: '-c, --config <file>', description: 'configuration' },
        { flags: '--json', description: 'json' },
      ],
      action: record('spool'),
      commands: [
        {
          name: 'export',
          description: 'export records',
          options: [
            { flags: '-c, --config <file>', description: 'configuration' },
            { flags: '--format <f>', description: 'format', choices: ['csv', 'json'], default: 'csv' },
          ],
          action: record('export'),
        },
      ],
    },
    {
      name: 'ride',
      description: 'rides',
      commands: [
        {
          name: 'chart',
          description: 'a chart',
          args: [{ name: 'ride', description: 'which ride' }],
          options: [
            { flags: '-o, --out <file>', description: 'SVG file', required: true },
            { flags: '--limit <n>', description: 'how many', parse: int, default: 3 },
          ],
          action: record('chart'),
        },
      ],
    },
  ],
};

/** The action's name and the arguments it would get. */
function run(...argv: string[]): unknown[] {
  const inv = parseCommandLine(program, argv);
  if (inv.kind !== 'run') throw new Error(`expected a run, got ${inv.kind}`);
  calls.length = 0;
  void inv.action(...(inv.args as never[]));
  return calls[0];
}

function usage(...argv: string[]): UsageError {
  try {
    parseCommandLine(program, argv);
  } catch (err) {
    if (err instanceof UsageError) return err;
    throw err;
  }
  throw new Error(`no usage error for ${argv.join(' ')}`);
}

const printed = (...argv: string[]): string => {
  const inv: Invocation = parseCommandLine(program, argv);
  if (inv.kind !== 'print') throw new Error('expected a text');
  return inv.text;
};

describe('the command line (util.parseArgs under declared commands)', () => {
  it('long, short, inline and joined values, flags, camelCase keys, last one wins', () => {
    expect(run('run', '--config', 'a.json', '--simulate')).toEqual(['run', { config: 'a.json', simulate: true }]);
    expect(run('run', '-c', 'a.json')).toEqual(['run', { config: 'a.json' }]);
    expect(run('run', '-cb.json')).toEqual(['run', { config: 'b.json' }]);
    expect(run('run', '--config=c.json', '--http-port', '8080')).toEqual(['run', { config: 'c.json', httpPort: 8080 }]);
    expect(run('run', '-c', 'a', '-c', 'b')).toEqual(['run', { config: 'b' }]);
    expect(run('run', '--with-parent')).toEqual(['run', { withParent: true }]);
  });

  it('arguments in order before the options, defaults filled in, `--` ends the options', () => {
    expect(run('ride', 'chart', 'last', '-o', 'x.svg')).toEqual(['chart', 'last', { out: 'x.svg', limit: 3 }]);
    expect(run('ride', 'chart', '-o', 'x.svg', '--limit', '7', '--', '-5')).toEqual(['chart', '-5', { out: 'x.svg', limit: 7 }]);
  });

  it('a subcommand sees the options given to its parent before its name, unless it sets them', () => {
    expect(run('spool', '-c', 'p.json', 'export')).toEqual(['export', { config: 'p.json', format: 'csv' }]);
    expect(run('spool', '-c', 'p.json', 'export', '-c', 'own.json', '--format', 'json')).toEqual([
      'export',
      { config: 'own.json', format: 'json' },
    ]);
    // The parent's own action when no subcommand is named.
    expect(run('spool', '--json')).toEqual(['spool', { json: true }]);
  });

  it('wrong usage is a UsageError (code cli_usage) that names what is wrong', () => {
    const cases: [string[], RegExp][] = [
      [['run', '--no-such-flag'], /unknown option '--no-such-flag' \(see tool run --help\)/],
      [['run', '-x'], /unknown option '-x'/],
      [['run', '--config'], /option '-c, --config <file>' needs a value/],
      [['run', '--config', '--simulate'], /option '-c, --config <file>' needs a value/],
      [['run', '--simulate=yes'], /option '--simulate' takes no value/],
      [['run', '--records', 'some'], /option '--records <mode>' must be one of all, none \(got "some"\)/],
      [['run', 'extra'], /unexpected argument 'extra'/],
      [['ride', 'chart', '-o', 'x.svg', '--limit', '0'], /--limit must be an integer from 1 to 10 \(got "0"\)/],
      [['ride', 'chart', '-o', 'x.svg'], /missing argument <ride>/],
      [['ride', 'chart', 'last'], /required option '-o, --out <file>' not given/],
      [['ride', 'chart', 'a', 'b', '-o', 'x'], /unexpected argument 'b'/],
      [['rnu'], /unknown command 'rnu' \(did you mean 'run'\?\)/],
      [['zzzzzz'], /^unknown command 'zzzzzz'$/],
      [['help', 'nope'], /unknown command 'nope'/],
    ];
    for (const [argv, message] of cases) {
      const err = usage(...argv);
      expect(err.code, argv.join(' ')).toBe('cli_usage');
      expect(err.message, argv.join(' ')).toMatch(message);
      expect(err.help).toBeUndefined();
    }
  });

  it('a command that only groups others, called alone, is a usage error carrying its help', () => {
    const root = usage();
    expect(root.message).toBe('missing command');
    expect(root.help).toMatch(/^Usage: tool \[options\] \[command\]/);
    const ride = usage('ride');
    expect(ride.message).toBe("missing command after 'ride'");
    expect(ride.help).toMatch(/^Usage: tool ride \[options\] \[command\]\n\nrides\n/);
    expect(ride.help).toMatch(/\n {2}chart \[options\] <ride> {2}a chart\n/);
  });

  it('--help, -h and `help` print the help of the command concerned, even beside a mistake; --version the version', () => {
    const top = printed('--help');
    expect(top).toBe(printed('help'));
    expect(top).toContain('Usage: tool [options] [command]\n\na test program\n');
    expect(top).toMatch(/\n {2}-V, --version +output the version number\n/);
    expect(top).toMatch(/\n {2}run \[options\] +run it\n/);
    expect(top).toMatch(/\n {2}help \[command\] +display help for command\n/);
    const runHelp = printed('run', '--no-such-flag', '-h');
    expect(runHelp).toBe(printed('help', 'run'));
    expect(runHelp).toMatch(/\n {2}--records <mode> +records \(choices: "all", "none"\)\n/);
    expect(runHelp).not.toContain('--with-parent');
    expect(runHelp).not.toContain('--version');
    expect(printed('spool', 'export', '--help')).toMatch(
      /^Usage: tool spool export \[options\]\n[\s\S]*--format <f> +format \(choices: "csv", "json", default: "csv"\)/,
    );
    expect(printed('help', 'ride', 'chart')).toMatch(/Arguments:\n {2}ride +which ride\n/);
    expect(printed('--version')).toBe('9.8.7\n');
    expect(printed('-V')).toBe('9.8.7\n');
    expect(() => parseCommandLine(program, ['run', '--version'])).toThrow(UsageError);
  });

  it('wraps long descriptions under their column', () => {
    const text = helpText(
      [{ name: 'x', description: 'short', options: [{ flags: '--long-one', description: 'word '.repeat(30).trim() }] }],
      60,
    );
    const lines = text.split('\n');
    const first = lines.findIndex((l) => l.startsWith('  --long-one'));
    expect(lines[first].length).toBeLessThanOrEqual(60);
    // The next line starts under the first word of the description.
    const column = lines[first].indexOf('word');
    expect(lines[first + 1].indexOf('word')).toBe(column);
    expect(lines[first + 1].slice(0, column).trim()).toBe('');
  });
});
