/**
 * `bike-telemetry`: one executable, one subcommand per job. Subcommands stay
 * thin; the work lives in the modules they call. Each command's module is
 * loaded when that command runs, never before: `--help` and `status` must
 * not pay for the agent's pipeline (serialport, SQLite, MQTT).
 */
import { fstatSync } from 'node:fs';
import { AgentError } from '../util/errors.js';
import { ConfigError } from '../config/errors.js';
import { AGENT_VERSION } from '../version.js';
import { ExitCode } from './exit-codes.js';
import { AgentNotRunningError, ApiRequestError } from '../api/errors.js';
import { lazy, type ActionKind } from './command-action.js';
import { parseCommandLine, UsageError, type CommandSpec, type OptionSpec, type ProgramSpec } from './command-line.js';

/** A developer tool's command run from a device bundle, which leaves such tools out (exit 6, not found). */
class DevToolMissingError extends AgentError<'dev_tool_missing'> {
  constructor(message: string) {
    super('dev_tool_missing', message);
  }
}

const quick: ActionKind = { quick: true };
const service: ActionKind = { service: true };
const runCommand = lazy(() => import('./run.js'), 'runCommand', service);
const statusCommand = lazy(() => import('./status.js'), 'statusCommand');
const liveCommand = lazy(() => import('./live.js'), 'liveCommand');
const portsCommand = lazy(() => import('./ports.js'), 'portsCommand', quick);
const spoolCommand = lazy(() => import('./spool-cmd.js'), 'spoolCommand', quick);
const exportCommand = lazy(() => import('./spool-cmd.js'), 'exportCommand');
const rideListCommand = lazy(() => import('./ride-cmd.js'), 'rideListCommand', quick);
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
const updaterCommand = lazy(() => import('./updater-cmd.js'), 'updaterCommand', service);
const selftestCommand = lazy(() => import('./selftest.js'), 'selftestCommand');
const simulateCommand = lazy(() => import('./simulate.js'), 'simulateCommand');
const boardInfoCommand = lazy(() => import('./board-cmd.js'), 'boardInfoCommand', quick);
const boardUpdateCommand = lazy(() => import('./board-cmd.js'), 'boardUpdateCommand');
const boardImageCommand = lazy(() => import('./board-cmd.js'), 'boardImageCommand');

function num(name: string, min: number, max: number, integer = false) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      throw new Error(`${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`);
    }
    return n;
  };
}

const CONFIG_HELP = 'configuration file (default: $BIKE_TELEMETRY_CONFIG, else /etc/bike-telemetry/config.json when present)';
const SOCKET_HELP = "the agent's API socket (default: from the configuration)";
const config: OptionSpec = { flags: '-c, --config <file>', description: CONFIG_HELP };
const socket: OptionSpec = { flags: '--socket <path>', description: SOCKET_HELP };
const jsonOut: OptionSpec = { flags: '--json', description: 'machine-readable output' };

const spool: CommandSpec = {
  name: 'spool',
  description: 'the spool: backlog, size, oldest record, gaps (reads the file; the agent need not run)',
  options: [config, jsonOut],
  action: spoolCommand,
  commands: [
    {
      name: 'export',
      description: 'export records as CSV or JSON lines',
      options: [
        config,
        { flags: '--format <format>', description: 'output format', choices: ['csv', 'json'], default: 'csv' },
        { flags: '--from <seq|time>', description: 'first sequence number or ISO 8601 time' },
        { flags: '--to <seq|time>', description: 'last sequence number or ISO 8601 time' },
        { flags: '--ride <ride>', description: 'only the records of this ride (id or number)' },
        { flags: '-o, --out <file>', description: 'write to a file instead of stdout' },
      ],
      // -c may come before or after `export`: the parent's options count too (command-line.ts).
      action: exportCommand,
    },
  ],
};

const ride: CommandSpec = {
  name: 'ride',
  description: 'rides kept in the spool',
  commands: [
    {
      name: 'list',
      description: 'the newest rides with their summaries',
      options: [config, { flags: '--limit <n>', description: 'how many', parse: num('--limit', 1, 10000, true), default: 20 }, jsonOut],
      action: rideListCommand,
    },
    {
      name: 'chart',
      description: 'an SVG chart of power, cadence and heart rate over a ride, with its summary',
      args: [{ name: 'ride', description: 'ride id, its number from `ride list`, or "last"' }],
      options: [{ flags: '-o, --out <file>', description: 'SVG file to write', required: true }, config],
      action: rideChartCommand,
    },
  ],
};

const board: CommandSpec = {
  name: 'board',
  description: "the flywheel board's firmware: what it runs, and updates over the link (fwp)",
  commands: [
    {
      name: 'info',
      description: 'board model, boot mode, both image slots and any transfer in progress (asks the board)',
      options: [config, socket, jsonOut],
      action: boardInfoCommand,
    },
    {
      name: 'update',
      description:
        'install a signed board image (.fwimg): checked, then sent when the bike is idle; a progress bar until the board runs it',
      args: [{ name: 'file', description: 'the signed image (.fwimg)' }],
      options: [
        config,
        socket,
        { flags: '--detach', description: 'return once the agent has accepted the image' },
        { flags: '--json', description: 'machine-readable output (the final state)' },
      ],
      action: boardUpdateCommand,
    },
    {
      name: 'image',
      description: "the firmware team's release step: wrap a raw image into a signed .fwimg",
      args: [{ name: 'raw', description: 'the raw firmware image' }],
      options: [
        { flags: '--model <id>', description: 'board model id', parse: num('--model', 1, 65535, true), required: true },
        { flags: '--fw-version <a.b.c>', description: 'firmware version of the image', required: true },
        { flags: '--key <file>', description: 'Ed25519 private key (PEM) of the fleet firmware key', required: true },
        { flags: '--key-id <id>', description: 'the key id devices trust it under', required: true },
        { flags: '-o, --out <file>', description: 'the .fwimg to write', required: true },
        { flags: '--allow-downgrade', description: 'may be installed over a newer version' },
        { flags: '--notes <text>', description: 'release notes carried in the signed header' },
      ],
      action: boardImageCommand,
    },
  ],
};

const program: ProgramSpec = {
  name: 'bike-telemetry',
  description: 'Edge telemetry agent for connected exercise bikes',
  version: AGENT_VERSION,
  commands: [
    {
      name: 'run',
      description: 'run the agent: serial link, 10 Hz metrics, record output',
      options: [
        { flags: '-c, --config <file>', description: 'JSON configuration file (embedded defaults when absent)' },
        { flags: '--simulate', description: 'start the built-in flywheel-board simulator on a pty and connect to it' },
        { flags: '--records <mode>', description: 'log every 10 Hz record, one per second, or none', choices: ['all', '1hz', 'none'] },
        {
          flags: '--http-port <port>',
          description: 'serve the diagnostics page and browser API on this loopback port (0: off)',
          parse: num('--http-port', 0, 65535, true),
        },
        { flags: '--protocol <name>', description: 'wire protocol (overrides serial.protocol)', choices: ['fwp', 'peloton'] },
      ],
      action: runCommand,
    },
    {
      name: 'status',
      description: 'link, board, spool, upload and ride on one screen; exit 0 healthy, 4 unhealthy, 5 agent not running',
      options: [config, socket, jsonOut],
      action: statusCommand,
    },
    {
      name: 'live',
      description: 'live figures at 10 Hz with one-minute sparklines; q or Ctrl-C quits',
      options: [config, socket],
      action: liveCommand,
    },
    {
      name: 'ports',
      description: 'serial ports present, with USB ids, and the one the configuration names',
      options: [config, socket, jsonOut],
      action: portsCommand,
    },
    spool,
    ride,
    {
      name: 'capture',
      description: 'record raw serial bytes with timestamps (through the running agent, else from the port)',
      options: [
        { flags: '-o, --out <file>', description: 'capture file to write', required: true },
        { flags: '--seconds <s>', description: 'how long', parse: num('--seconds', 0.1, 86400), default: 10 },
        config,
        socket,
        { flags: '--json', description: 'machine-readable summary' },
      ],
      action: captureCommand,
    },
    {
      name: 'replay',
      description: 'play a capture or a plain byte dump through the decoder and metrics engine',
      args: [{ name: 'file', description: 'capture file (from `capture`) or raw byte dump' }],
      options: [
        { flags: '--realtime', description: 'at the pace it was recorded (a dump: at line speed)' },
        { flags: '--records', description: 'print every 10 Hz record as a JSON line' },
        {
          flags: '--protocol <name>',
          description: "the capture's protocol (default: from the capture, or recognised in a dump)",
          choices: ['fwp', 'peloton'],
        },
        { flags: '--calibration <name|file>', description: 'bike model calibration (default: from the configuration)' },
        config,
        { flags: '--json', description: 'machine-readable summary' },
      ],
      action: replayCommand,
    },
    {
      name: 'fleet-sim',
      description:
        'N simulated bikes (real spool and uploader each) against a private Mosquitto: steady, outage or cold-start; per-second JSON lines and a result',
      options: [
        { flags: '--bikes <n>', description: 'how many bikes', parse: num('--bikes', 1, 100000, true), default: 100 },
        { flags: '--workers <n>', description: 'worker processes (default: one per core)', parse: num('--workers', 1, 64, true) },
        { flags: '--seconds <s>', description: 'riding time', parse: num('--seconds', 1, 86400, true), default: 30 },
        {
          flags: '--scenario <name>',
          description: 'steady, outage (broker down, then up) or cold-start (every bike at once)',
          choices: ['steady', 'outage', 'cold-start'],
          default: 'steady',
        },
        { flags: '--outage-s <s>', description: 'outage length', parse: num('--outage-s', 1, 86400, true), default: 60 },
        { flags: '--outage-at <s>', description: 'outage start', parse: num('--outage-at', 1, 86400, true), default: 10 },
        { flags: '--limit-at <s>', description: 'set a fleet upload limit at this second', parse: num('--limit-at', 1, 86400, true) },
        { flags: '--limit <bytes/s>', description: 'the fleet limit, per bike', parse: num('--limit', 1, 1e9, true), default: 200 },
        {
          flags: '--backoff-base-ms <ms>',
          description: 'reconnect backoff base',
          parse: num('--backoff-base-ms', 100, 600000, true),
          default: 1000,
        },
        {
          flags: '--backoff-cap-ms <ms>',
          description: 'reconnect backoff cap',
          parse: num('--backoff-cap-ms', 100, 3600000, true),
          default: 120000,
        },
        { flags: '--dir <dir>', description: 'folder for the spools' },
        { flags: '--worker <json>', description: 'a worker process of this command', hidden: true },
      ],
      action: fleetSimCommand,
    },
    {
      name: 'updater',
      description: 'the over-the-air updater: takes signed offers, installs, health-checks, rolls back',
      options: [
        config,
        {
          flags: '--once',
          description: 'finish an interrupted update, handle the offers the agent left in the inbox, then exit (the shipped units)',
        },
      ],
      action: updaterCommand,
    },
    {
      name: 'selftest',
      description: 'check config, spool, serial device and broker; a pass/fail table, exit 4 when a check fails',
      options: [
        config,
        socket,
        {
          flags: '--timeout <s>',
          description: 'seconds to wait for the board and the broker',
          parse: num('--timeout', 0.5, 120),
          default: 5,
        },
        jsonOut,
      ],
      action: selftestCommand,
    },
    {
      name: 'simulate',
      description: 'a virtual flywheel board speaking fwp on a pseudo-terminal (prints its path) or stdout',
      options: [
        { flags: '--script <file>', description: 'ride script JSON (built-in interval ride when absent)' },
        { flags: '--calibration <name|file>', description: 'bike model calibration', default: 'sim-bike-v1' },
        { flags: '--rate <hz>', description: 'SAMPLE frames per second', parse: num('--rate', 1, 200, true), default: 50 },
        { flags: '--seed <n>', description: 'random seed for noise and faults', parse: num('--seed', 0, 2 ** 32, true), default: 1 },
        { flags: '--baud <rate>', description: 'baud rate of the pty', parse: num('--baud', 1200, 4_000_000, true), default: 115200 },
        { flags: '--stdout', description: 'write the byte stream to stdout instead of a pty' },
        { flags: '--dir <dir>', description: 'folder for the pty links (board, console)' },
        { flags: '--duration <s>', description: 'stop after this many seconds', parse: num('--duration', 0, 1e9) },
        { flags: '--noise <bytes/s>', description: 'inject random bytes between frames', parse: num('--noise', 0, 1e6), default: 0 },
        { flags: '--bad-crc <fraction>', description: 'corrupt this fraction of frames', parse: num('--bad-crc', 0, 1), default: 0 },
        { flags: '--drop <fraction>', description: 'drop this fraction of frames', parse: num('--drop', 0, 1), default: 0 },
        { flags: '--unplug-every <s>', description: 'pull the cable every S seconds', parse: num('--unplug-every', 0.1, 1e9) },
        { flags: '--unplug-for <s>', description: 'and plug it back in after S seconds', parse: num('--unplug-for', 0.1, 1e9), default: 2 },
        {
          flags: '--clock-start <us>',
          description: 'board clock at boot (test the 32-bit wrap)',
          parse: num('--clock-start', 0, 2 ** 32 - 1, true),
          default: 0,
        },
        {
          flags: '--protocol <name>',
          description: 'fwp (our flywheel board) or peloton (the original bike, answering polls)',
          choices: ['fwp', 'peloton'],
          default: 'fwp',
        },
        { flags: '--refuse-calibration', description: 'peloton: do not answer calibration-table requests' },
        // For `run --simulate`, which starts the simulator as its child: exit when stdin closes (the agent is gone).
        { flags: '--with-parent', description: 'exit when stdin closes', hidden: true },
        {
          flags: '--flash <file>',
          description: 'fwp: a board with a bootloader and two image slots in this file (takes firmware updates)',
        },
        {
          flags: '--board-model <id>',
          description: 'fwp: the board model id it says in HELLO',
          parse: num('--board-model', 1, 65535, true),
          default: 1,
        },
        { flags: '--paced', description: "deliver the console's bytes at the line rate (baud / 10 per second), as a real UART" },
        {
          flags: '--chunk-noise <fraction>',
          description: 'corrupt this fraction of firmware chunks on their way to the board',
          parse: num('--chunk-noise', 0, 1),
          default: 0,
        },
      ],
      action: simulateCommand,
    },
    board,
  ],
};

try {
  const invocation = parseCommandLine(program, process.argv.slice(2));
  if (invocation.kind === 'print') process.stdout.write(invocation.text);
  else await invocation.action(...(invocation.args as never[]));
} catch (err) {
  if (err instanceof UsageError) {
    if (err.help) process.stderr.write(err.help);
    printError(err.message);
    process.exitCode = ExitCode.USAGE;
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
