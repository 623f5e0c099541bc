/**
 * `worker --coordinator URL --token T [--gpu N] [--objective ddpm|fm|any] [--backend B]
 * [--threads N] [--work-dir DIR] [--name NAME] [--exit-when-idle]`
 *
 * Order of start-up: parse flags, load the compute backend (a GPU that cannot load ends here with
 * exit 2, before anything is sent), take the work dir's lock, then run the {@link Worker}.
 * SIGINT/SIGTERM ask for a graceful stop; a second one exits at once with 1.
 */
import { availableParallelism, hostname, totalmem } from 'node:os';
import {
  BACKENDS,
  type BackendInfo,
  BackendUnavailableError,
  initBackend,
} from '@archipelago/models';
import { type ExpertObjective, type Hello, OBJECTIVES, parseFrame } from '@archipelago/protocol';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { socketUrl } from './connection.js';
import { EXIT } from './exit-codes.js';
import { Reporter } from './reporter.js';
import { VERSION } from './version.js';
import { WorkDir, WorkDirInUseError } from './work-dir.js';
import { Worker } from './worker.js';

export interface CliOptions {
  coordinator: string;
  token: string;
  gpu?: number;
  objective: ExpertObjective;
  backend?: (typeof BACKENDS)[number] | 'auto';
  threads: number;
  workDir?: string;
  name?: string;
  exitWhenIdle: boolean;
}

const nonNegativeInt = (flag: string, min: number) => (value: string) => {
  if (!/^\d+$/.test(value) || Number(value) < min)
    throw new InvalidArgumentError(`${flag} must be an integer >= ${min}, got "${value}"`);
  return Number(value);
};

const coordinatorUrl = (value: string) => {
  try {
    socketUrl(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return value.replace(/\/+$/, '');
};

export function buildCli(): Command {
  return new Command('worker')
    .description(
      'Archipelago volunteer worker: leases an expert from a coordinator, trains it, uploads checkpoints',
    )
    .version(VERSION)
    .addOption(
      new Option('--coordinator <url>', 'coordinator base URL, e.g. https://coordinator.example')
        .env('ARCHIPELAGO_COORDINATOR')
        .argParser(coordinatorUrl)
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--token <token>', 'worker token from the organiser')
        .env('ARCHIPELAGO_WORKER_TOKEN')
        .makeOptionMandatory(),
    )
    .addOption(
      new Option(
        '--gpu <index>',
        'train on this CUDA device (needs @tensorflow/tfjs-node-gpu); without it the CPU trains',
      ).argParser(nonNegativeInt('--gpu', 0)),
    )
    .addOption(
      new Option(
        '--objective <family>',
        'objective family of the experts to accept (ddpm: epsilon and v-prediction on the DDPM schedule)',
      )
        .choices([...OBJECTIVES, 'any'])
        .default('any'),
    )
    .addOption(
      new Option(
        '--backend <backend>',
        'TensorFlow.js backend (default: tensorflow-gpu with --gpu, else auto)',
      ).choices(['auto', ...BACKENDS]),
    )
    .addOption(
      new Option('--threads <n>', 'data-parallel training threads')
        .argParser(nonNegativeInt('--threads', 1))
        .default(1),
    )
    .addOption(
      new Option(
        '--work-dir <dir>',
        'identity, lease state, shard cache and checkpoints (default: ~/.archipelago/worker-gpu<N> or worker-cpu)',
      ).env('ARCHIPELAGO_WORK_DIR'),
    )
    .option('--name <name>', 'name shown on the dashboard (default: hostname and device)')
    .option(
      '--exit-when-idle',
      'exit (0) when the coordinator has no work instead of waiting',
      false,
    )
    .showHelpAfterError('(run worker --help for usage)');
}

/** Parse `argv`, run the worker, and return the process exit code. */
export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildCli().exitOverride();
  try {
    program.parse(argv);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.error;
    throw err;
  }
  const opts = program.opts<CliOptions>();
  const log = new Reporter();
  const device = opts.gpu === undefined ? 'cpu' : `gpu${opts.gpu}`;

  let backend: BackendInfo;
  try {
    backend = await initBackend({
      backend: opts.backend ?? (opts.gpu === undefined ? 'auto' : 'tensorflow-gpu'),
      ...(opts.gpu === undefined ? {} : { gpu: opts.gpu }),
    });
  } catch (err) {
    if (err instanceof BackendUnavailableError) {
      log.error(err.message);
      return EXIT.backend;
    }
    throw err;
  }

  const hardware: Hello['hardware'] = {
    cpus: Math.max(1, availableParallelism()),
    memoryBytes: totalmem(),
    ...(opts.gpu === undefined ? {} : { gpu: { index: opts.gpu } }),
    threads: opts.threads,
  };
  const name = (opts.name ?? `${hostname()}-${device}`).slice(0, 100);
  const workDir = new WorkDir(opts.workDir ?? WorkDir.defaultPath(opts.gpu));
  try {
    workDir.open();
  } catch (err) {
    if (err instanceof WorkDirInUseError) {
      log.error(err.message);
      return EXIT.error;
    }
    throw err;
  }

  try {
    const worker = new Worker({
      coordinator: opts.coordinator,
      token: opts.token,
      objective: opts.objective,
      name,
      threads: opts.threads,
      exitWhenIdle: opts.exitWhenIdle,
      workDir,
      backend,
      hardware,
      log,
    });
    // Refuse a hello the coordinator would reject (a token of the wrong shape, a long name).
    const check = parseFrame(JSON.stringify(worker.hello()), 'worker');
    if (!check.ok) {
      log.error(`invalid settings: ${check.message.replace(/^hello: /, '')}`);
      return EXIT.error;
    }
    const skipped = backend.skipped.map((s) => `${s.name}: ${s.reason}`).join('; ');
    log.info(
      `worker ${name} ${VERSION}: backend ${backend.name}${skipped ? ` (skipped ${skipped})` : ''}, ${opts.threads} thread(s), objective ${opts.objective}, work dir ${workDir.root}`,
    );

    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals === 1) return worker.stop(`received ${signal}`);
      log.error(`received ${signal} again: exiting now`);
      workDir.close();
      process.exit(EXIT.error);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      return await worker.run();
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  } finally {
    workDir.close();
  }
}
