/**
 * `bike-telemetry`: one executable, one subcommand per job. Subcommands stay
 * thin; the work lives in the modules they call. Each command's module is
 * loaded when that command runs, never before: `--help` and `status` must
 * not pay for the agent's pipeline (serialport, SQLite, MQTT).
 */
import { fstatSync } from 'node:fs';
import type * as Commander from 'commander';
import { requireCjs } from '../util/require-cjs.js';
import { AgentError } from '../util/errors.js';
import { ConfigError } from '../config/errors.js';
import { AGENT_VERSION } from '../version.js';
import { ExitCode } from './exit-codes.js';
import { AgentNotRunningError, ApiRequestError } from '../api/client.js';

const { Command, CommanderError, InvalidArgumentError, Option } = requireCjs('commander') as typeof Commander;

/** A developer tool's command run from a device bundle, which leaves such tools out (exit 6, not found). */
class DevToolMissingError extends AgentError<'dev_tool_missing'> {
  constructor(message: string) {
    super('dev_tool_missing', message);
  }
}

/** A command's action, imported when it runs. */
function lazy<M, K extends keyof M>(load: () => Promise<M>, name: K): (...args: unknown[]) => Promise<void> {
  return async (...args) => {
    const action = (await load())[name] as (...a: unknown[]) => void | Promise<void>;
    await action(...args);
  };
}
const runCommand = lazy(() => import('./run.js'), 'runCommand');
const statusCommand = lazy(() => import('./status.js'), 'statusCommand');
const liveCommand = lazy(() => import('./live.js'), 'liveCommand');
const portsCommand = lazy(() => import('./ports.js'), 'portsCommand');
const spoolCommand = lazy(() => import('./spool-cmd.js'), 'spoolCommand');
const exportCommand = lazy(() => import('./spool-cmd.js'), 'exportCommand');
const rideListCommand = lazy(() => import('./ride-cmd.js'), 'rideListCommand');
const rideChartCommand = lazy(() => import('./ride-cmd.js'), 'rideChartCommand');
const captureCommand = lazy(() => import('./capture-cmd.js'), 'captureCommand');
const replayCommand = lazy(() => import('./capture-cmd.js'), 'replayCommand');
const fleetSimCommand = lazy(async () => {
  try {
    return await import('./fleet-sim-cmd.js');
  } catch (err) {
    // A device bundle leaves the developer tools out (package.json devOnlyModules).
    if ((err as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    throw new DevToolMissingError('fleet-sim is a developer tool and is not in a device bundle: run it from a checkout');
  }
}, 'fleetSimCommand');
const updaterCommand = lazy(() => import('./updater-cmd.js'), 'updaterCommand');
const selftestCommand = lazy(() => import('./selftest.js'), 'selftestCommand');
const simulateCommand = lazy(() => import('./simulate.js'), 'simulateCommand');
const boardInfoCommand = lazy(() => import('./board-cmd.js'), 'boardInfoCommand');
const boardUpdateCommand = lazy(() => import('./board-cmd.js'), 'boardUpdateCommand');
const boardImageCommand = lazy(() => import('./board-cmd.js'), 'boardImageCommand');

function num(name: string, min: number, max: number, integer = false) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      throw new InvalidArgumentError(`${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`);
    }
    return n;
  };
}

const program = new Command('bike-telemetry')
  .description('Edge telemetry agent for connected exercise bikes')
  .version(AGENT_VERSION)
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(str) });

program
  .command('run')
  .description('run the agent: serial link, 10 Hz metrics, record output')
  .option('-c, --config <file>', 'JSON configuration file (embedded defaults when absent)')
  .option('--simulate', 'start the built-in flywheel-board simulator on a pty and connect to it')
  .addOption(new Option('--records <mode>', 'log every 10 Hz record, one per second, or none').choices(['all', '1hz', 'none']))
  .option(
    '--http-port <port>',
    'serve the diagnostics page and browser API on this loopback port (0: off)',
    num('--http-port', 0, 65535, true),
  )
  .addOption(new Option('--protocol <name>', 'wire protocol (overrides serial.protocol)').choices(['fwp', 'peloton']))
  .action(runCommand);

const CONFIG_HELP = 'configuration file (default: $BIKE_TELEMETRY_CONFIG, else /etc/bike-telemetry/config.json when present)';
const SOCKET_HELP = "the agent's API socket (default: from the configuration)";

program
  .command('status')
  .description('link, board, spool, upload and ride on one screen; exit 0 healthy, 4 unhealthy, 5 agent not running')
  .option('-c, --config <file>', CONFIG_HELP)
  .option('--socket <path>', SOCKET_HELP)
  .option('--json', 'machine-readable output')
  .action(statusCommand);

program
  .command('live')
  .description('live figures at 10 Hz with one-minute sparklines; q or Ctrl-C quits')
  .option('-c, --config <file>', CONFIG_HELP)
  .option('--socket <path>', SOCKET_HELP)
  .action(liveCommand);

program
  .command('ports')
  .description('serial ports present, with USB ids, and the one the configuration names')
  .option('-c, --config <file>', CONFIG_HELP)
  .option('--socket <path>', SOCKET_HELP)
  .option('--json', 'machine-readable output')
  .action(portsCommand);

const spool = program
  .command('spool')
  .description('the spool: backlog, size, oldest record, gaps (reads the file; the agent need not run)')
  .option('-c, --config <file>', CONFIG_HELP)
  .option('--json', 'machine-readable output')
  .action(spoolCommand);
spool
  .command('export')
  .description('export records as CSV or JSON lines')
  .option('-c, --config <file>', CONFIG_HELP)
  .addOption(new Option('--format <format>', 'output format').choices(['csv', 'json']).default('csv'))
  .option('--from <seq|time>', 'first sequence number or ISO 8601 time')
  .option('--to <seq|time>', 'last sequence number or ISO 8601 time')
  .option('--ride <ride>', 'only the records of this ride (id or number)')
  .option('-o, --out <file>', 'write to a file instead of stdout')
  // -c may come before or after `export`: the parent's options count too.
  .action((_opts, cmd: Commander.Command) => exportCommand(cmd.optsWithGlobals()));

const ride = program.command('ride').description('rides kept in the spool');
ride
  .command('list')
  .description('the newest rides with their summaries')
  .option('-c, --config <file>', CONFIG_HELP)
  .option('--limit <n>', 'how many', num('--limit', 1, 10000, true), 20)
  .option('--json', 'machine-readable output')
  .action(rideListCommand);
ride
  .command('chart')
  .description('an SVG chart of power, cadence and heart rate over a ride, with its summary')
  .argument('<ride>', 'ride id, its number from `ride list`, or "last"')
  .requiredOption('-o, --out <file>', 'SVG file to write')
  .option('-c, --config <file>', CONFIG_HELP)
  .action(rideChartCommand);

program
  .command('capture')
  .description('record raw serial bytes with timestamps (through the running agent, else from the port)')
  .requiredOption('-o, --out <file>', 'capture file to write')
  .option('--seconds <s>', 'how long', num('--seconds', 0.1, 86400), 10)
  .option('-c, --config <file>', CONFIG_HELP)
  .option('--socket <path>', SOCKET_HELP)
  .option('--json', 'machine-readable summary')
  .action(captureCommand);

program
  .command('replay')
  .description('play a capture or a plain byte dump through the decoder and metrics engine')
  .argument('<file>', 'capture file (from `capture`) or raw byte dump')
  .option('--realtime', 'at the pace it was recorded (a dump: at line speed)')
  .option('--records', 'print every 10 Hz record as a JSON line')
  .addOption(
    new Option('--protocol <name>', "the capture's protocol (default: from the capture, or recognised in a dump)").choices([
      'fwp',
      'peloton',
    ]),
  )
  .option('--calibration <name|file>', 'bike model calibration (default: from the configuration)')
  .option('-c, --config <file>', CONFIG_HELP)
  .option('--json', 'machine-readable summary')
  .action(replayCommand);

program
  .command('fleet-sim')
  .description(
    'N simulated bikes (real spool and uploader each) against a private Mosquitto: steady, outage or cold-start; per-second JSON lines and a result',
  )
  .option('--bikes <n>', 'how many bikes', num('--bikes', 1, 100000, true), 100)
  .option('--workers <n>', 'worker processes (default: one per core)', num('--workers', 1, 64, true))
  .option('--seconds <s>', 'riding time', num('--seconds', 1, 86400, true), 30)
  .addOption(
    new Option('--scenario <name>', 'steady, outage (broker down, then up) or cold-start (every bike at once)')
      .choices(['steady', 'outage', 'cold-start'])
      .default('steady'),
  )
  .option('--outage-s <s>', 'outage length', num('--outage-s', 1, 86400, true), 60)
  .option('--outage-at <s>', 'outage start', num('--outage-at', 1, 86400, true), 10)
  .option('--limit-at <s>', 'set a fleet upload limit at this second', num('--limit-at', 1, 86400, true))
  .option('--limit <bytes/s>', 'the fleet limit, per bike', num('--limit', 1, 1e9, true), 200)
  .option('--backoff-base-ms <ms>', 'reconnect backoff base', num('--backoff-base-ms', 100, 600000, true), 1000)
  .option('--backoff-cap-ms <ms>', 'reconnect backoff cap', num('--backoff-cap-ms', 100, 3600000, true), 120000)
  .option('--dir <dir>', 'folder for the spools')
  .addOption(new Option('--worker <json>').hideHelp())
  .action(fleetSimCommand);

program
  .command('updater')
  .description('the over-the-air updater: takes signed offers, installs, health-checks, rolls back')
  .option('-c, --config <file>', CONFIG_HELP)
  .option('--once', 'finish an interrupted update, handle the offers the agent left in the inbox, then exit (the shipped units)')
  .action(updaterCommand);

program
  .command('selftest')
  .description('check config, spool, serial device and broker; a pass/fail table, exit 4 when a check fails')
  .option('-c, --config <file>', CONFIG_HELP)
  .option('--socket <path>', SOCKET_HELP)
  .option('--timeout <s>', 'seconds to wait for the board and the broker', num('--timeout', 0.5, 120), 5)
  .option('--json', 'machine-readable output')
  .action(selftestCommand);

program
  .command('simulate')
  .description('a virtual flywheel board speaking fwp on a pseudo-terminal (prints its path) or stdout')
  .option('--script <file>', 'ride script JSON (built-in interval ride when absent)')
  .option('--calibration <name|file>', 'bike model calibration', 'sim-bike-v1')
  .option('--rate <hz>', 'SAMPLE frames per second', num('--rate', 1, 200, true), 50)
  .option('--seed <n>', 'random seed for noise and faults', num('--seed', 0, 2 ** 32, true), 1)
  .option('--baud <rate>', 'baud rate of the pty', num('--baud', 1200, 4_000_000, true), 115200)
  .option('--stdout', 'write the byte stream to stdout instead of a pty')
  .option('--dir <dir>', 'folder for the pty links (board, console)')
  .option('--duration <s>', 'stop after this many seconds', num('--duration', 0, 1e9))
  .option('--noise <bytes/s>', 'inject random bytes between frames', num('--noise', 0, 1e6), 0)
  .option('--bad-crc <fraction>', 'corrupt this fraction of frames', num('--bad-crc', 0, 1), 0)
  .option('--drop <fraction>', 'drop this fraction of frames', num('--drop', 0, 1), 0)
  .option('--unplug-every <s>', 'pull the cable every S seconds', num('--unplug-every', 0.1, 1e9))
  .option('--unplug-for <s>', 'and plug it back in after S seconds', num('--unplug-for', 0.1, 1e9), 2)
  .option('--clock-start <us>', 'board clock at boot (test the 32-bit wrap)', num('--clock-start', 0, 2 ** 32 - 1, true), 0)
  .addOption(
    new Option('--protocol <name>', 'fwp (our flywheel board) or peloton (the original bike, answering polls)')
      .choices(['fwp', 'peloton'])
      .default('fwp'),
  )
  .option('--refuse-calibration', 'peloton: do not answer calibration-table requests')
  // For `run --simulate`, which starts the simulator as its child: exit when stdin closes (the agent is gone).
  .addOption(new Option('--with-parent', 'exit when stdin closes').hideHelp())
  .option('--flash <file>', 'fwp: a board with a bootloader and two image slots in this file (takes firmware updates)')
  .option('--board-model <id>', 'fwp: the board model id it says in HELLO', num('--board-model', 1, 65535, true), 1)
  .option('--paced', "deliver the console's bytes at the line rate (baud / 10 per second), as a real UART")
  .option('--chunk-noise <fraction>', 'corrupt this fraction of firmware chunks on their way to the board', num('--chunk-noise', 0, 1), 0)
  .action(simulateCommand);

const board = program.command('board').description("the flywheel board's firmware: what it runs, and updates over the link (fwp)");
board
  .command('info')
  .description('board model, boot mode, both image slots and any transfer in progress (asks the board)')
  .option('-c, --config <file>', CONFIG_HELP)
  .option('--socket <path>', SOCKET_HELP)
  .option('--json', 'machine-readable output')
  .action(boardInfoCommand);
board
  .command('update <file>')
  .description('install a signed board image (.fwimg): checked, then sent when the bike is idle; a progress bar until the board runs it')
  .option('-c, --config <file>', CONFIG_HELP)
  .option('--socket <path>', SOCKET_HELP)
  .option('--detach', 'return once the agent has accepted the image')
  .option('--json', 'machine-readable output (the final state)')
  .action(boardUpdateCommand);
board
  .command('image <raw>')
  .description("the firmware team's release step: wrap a raw image into a signed .fwimg")
  .requiredOption('--model <id>', 'board model id', num('--model', 1, 65535, true))
  .requiredOption('--fw-version <a.b.c>', 'firmware version of the image')
  .requiredOption('--key <file>', 'Ed25519 private key (PEM) of the fleet firmware key')
  .requiredOption('--key-id <id>', 'the key id devices trust it under')
  .requiredOption('-o, --out <file>', 'the .fwimg to write')
  .option('--allow-downgrade', 'may be installed over a newer version')
  .option('--notes <text>', 'release notes carried in the signed header')
  .action(boardImageCommand);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
  } else if (err instanceof AgentNotRunningError) {
    printError(err.message);
    process.exitCode = ExitCode.NOT_RUNNING;
  } else if (err instanceof ApiRequestError) {
    printError(`the agent refused: ${err.code}: ${err.message}`);
    process.exitCode = ExitCode.FAILURE;
  } else if (err instanceof DevToolMissingError) {
    printError(err.message);
    process.exitCode = ExitCode.NOT_FOUND;
  } else if (err instanceof ConfigError) {
    printError(`configuration error: ${err.message}`);
    process.exitCode = ExitCode.CONFIG;
  } else {
    printError((err as Error).stack ?? String(err));
    process.exitCode = ExitCode.FAILURE;
  }
}

/**
 * An error for the person or the journal that reads stderr. Under systemd
 * (stderr is the journal stream JOURNAL_STREAM names) the line carries the
 * syslog priority err, so `journalctl -p err` shows why the unit failed.
 */
function printError(text: string): void {
  const lines = `bike-telemetry: ${text}`.split('\n');
  const prefix = stderrIsJournal() ? '<3>' : '';
  process.stderr.write(`${lines.map((l) => prefix + l).join('\n')}\n`);
}

function stderrIsJournal(): boolean {
  const js = process.env.JOURNAL_STREAM;
  if (!js) return false;
  try {
    const st = fstatSync(2);
    return js === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}
