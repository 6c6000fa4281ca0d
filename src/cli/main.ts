/**
 * `bike-telemetry`: one executable, one subcommand per job. Subcommands stay
 * thin; the work lives in the modules they call.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ConfigError } from '../config/load.js';
import { ExitCode } from './exit-codes.js';
import { runCommand } from './run.js';
import { simulateCommand } from './simulate.js';

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
  .version(process.env.npm_package_version ?? '0.1.0')
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(str) });

program
  .command('run')
  .description('run the agent: serial link, 10 Hz metrics, record output')
  .option('-c, --config <file>', 'JSON configuration file (embedded defaults when absent)')
  .option('--simulate', 'start the built-in flywheel-board simulator on a pty and connect to it')
  .addOption(new Option('--records <mode>', 'log every 10 Hz record, one per second, or none').choices(['all', '1hz', 'none']))
  .action(runCommand);

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
  .action(simulateCommand);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
  } else if (err instanceof ConfigError || (err instanceof Error && /^(calibration|ride script) /.test(err.message))) {
    process.stderr.write(`bike-telemetry: configuration error: ${err.message}\n`);
    process.exitCode = ExitCode.CONFIG;
  } else {
    process.stderr.write(`bike-telemetry: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = ExitCode.FAILURE;
  }
}
