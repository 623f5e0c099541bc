/**
 * `worker --coordinator URL --token T [--gpu N] [--objective ddpm|fm|any] [--backend B]
 * [--threads N] [--max-threads N] [--max-memory-mb M] [--work-dir DIR] [--name NAME]
 * [--exit-when-idle]`, and `worker pause|resume|finish|status [--work-dir DIR | --gpu N]` for the
 * worker running in a work dir (control-socket.ts), and `worker gpu-check [...]` (gpu-check.ts).
 *
 * Order of start-up: parse flags, load the compute backend (a GPU that cannot load ends here with
 * exit 2, before anything is sent), take the work dir's lock, open its control socket, then run
 * the {@link Worker}. SIGINT/SIGTERM ask for a graceful stop; a second one exits at once with 1.
 * SIGUSR1 pauses training and SIGUSR2 resumes it (Node's own SIGUSR1, which starts the inspector,
 * is thereby off: a daemon for volunteers should not open a debugger on a signal anyway).
 */
import { availableParallelism, hostname, totalmem } from 'node:os';
import {
  BACKENDS,
  type BackendInfo,
  BackendUnavailableError,
  describeBackend,
  initBackend,
} from '@archipelago/models';
import { type ExpertObjective, type Hello, OBJECTIVES, parseFrame } from '@archipelago/protocol';
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { socketUrl } from './connection.js';
import {
  CONTROL_COMMANDS,
  type ControlCommand,
  ControlServer,
  controlSocketPath,
  sendControl,
} from './control-socket.js';
import { Controls } from './controls.js';
import { EXIT } from './exit-codes.js';
import { gpuCheckMain } from './gpu-check.js';
import { Reporter } from './reporter.js';
import { VERSION } from './version.js';
import { WorkDir, WorkDirInUseError } from './work-dir.js';
import { Worker, type WorkerStatus } from './worker.js';

export interface CliOptions {
  coordinator: string;
  token: string;
  gpu?: number;
  objective: ExpertObjective;
  backend?: (typeof BACKENDS)[number] | 'auto';
  threads: number;
  maxThreads?: number;
  maxMemoryMb?: number;
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
        'train on this GPU: CUDA device N (tensorflow-gpu), else WebGPU adapter N (webgpu); without it the best GPU that works, else the CPU',
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
        'TensorFlow.js backend (default auto: tensorflow-gpu where it sees a CUDA GPU, webgpu on a hardware adapter, tensorflow, wasm, cpu; webgpu with no adapter falls back to wasm)',
      ).choices(['auto', ...BACKENDS]),
    )
    .addOption(
      new Option('--threads <n>', 'data-parallel training threads')
        .argParser(nonNegativeInt('--threads', 1))
        .default(1),
    )
    .addOption(
      new Option(
        '--max-threads <n>',
        'at most this many compute threads in all: caps --threads, and the native backends get the rest',
      ).argParser(nonNegativeInt('--max-threads', 1)),
    )
    .addOption(
      new Option(
        '--max-memory-mb <mb>',
        'stop (upload what is checkpointed, release the lease, exit 4) once the resident memory is above this',
      ).argParser(nonNegativeInt('--max-memory-mb', 1)),
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
    .addHelpText(
      'after',
      "\nA running worker is controlled with `worker pause|resume|finish|status [--work-dir DIR]`,\nor SIGUSR1 (pause) and SIGUSR2 (resume); see `worker status --help`.\n`worker gpu-check` measures this machine's training speed per backend (see `worker gpu-check --help`).",
    )
    .showHelpAfterError('(run worker --help for usage)');
}

/** `worker pause|resume|finish|status`: the local control of a running worker. */
export function buildControlCli(): Command {
  return new Command('worker')
    .description('Control the worker running in a work dir (pause, resume, finish, status)')
    .addArgument(
      new Argument(
        '<command>',
        'pause: stop training after the current step, keeping the lease; resume; finish: train to the next checkpoint, upload it, release the lease and exit; status',
      ).choices(CONTROL_COMMANDS),
    )
    .addOption(
      new Option(
        '--work-dir <dir>',
        "the worker's work dir (default: that of --gpu, as the worker picks it)",
      ).env('ARCHIPELAGO_WORK_DIR'),
    )
    .addOption(
      new Option('--gpu <index>', 'the worker started with --gpu N').argParser(
        nonNegativeInt('--gpu', 0),
      ),
    )
    .option('--json', 'print the reply as JSON', false)
    .option(
      '--wait',
      'with finish: return once the worker has exited (e.g. before a shutdown)',
      false,
    )
    .showHelpAfterError('(run worker <command> --help for usage)');
}

/** One line for a person: what the worker is doing. */
export function describeStatus(s: WorkerStatus): string {
  const lease = s.lease
    ? `expert ${s.lease.cluster} (${s.lease.objective}) of run ${s.lease.runId}, step ${s.lease.step}/${s.lease.targetSteps}`
    : 'no lease';
  const state = s.state === 'paused' && s.pausedSince ? `paused since ${s.pausedSince}` : s.state;
  const memory = `${s.rssMb} MiB${s.maxMemoryMb === null ? '' : ` of at most ${s.maxMemoryMb}`}`;
  return `worker ${s.name} (pid ${s.pid}): ${state}; ${lease}; ${s.threads} thread(s), ${memory}; ${s.connected ? 'connected to' : 'offline from'} ${s.coordinator}`;
}

/** Wait until process `pid` (the worker that answered) has exited. */
async function untilExited(pid: number): Promise<void> {
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
      throw err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function controlMain(argv: string[], log: Reporter): Promise<number> {
  const program = buildControlCli().exitOverride();
  try {
    program.parse(argv);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.error;
    throw err;
  }
  const command = program.args[0] as ControlCommand;
  const opts = program.opts<{ workDir?: string; gpu?: number; json: boolean; wait: boolean }>();
  const workDir = opts.workDir ?? WorkDir.defaultPath(opts.gpu);
  try {
    const reply = await sendControl(workDir, command);
    if (opts.json) process.stdout.write(`${JSON.stringify(reply)}\n`);
    if (!reply.ok) {
      log.error(`${reply.error} (${reply.code})`);
      return EXIT.error;
    }
    if (!opts.json) process.stdout.write(`${describeStatus(reply.status)}\n`);
    if (command === 'finish' && opts.wait) await untilExited(reply.status.pid);
    return EXIT.ok;
  } catch (err) {
    log.error((err as Error).message);
    return EXIT.error;
  }
}

/** Parse `argv`, run the worker (or a control command), and return the process exit code. */
export async function main(argv: string[] = process.argv): Promise<number> {
  if ((CONTROL_COMMANDS as readonly string[]).includes(argv[2] ?? ''))
    return controlMain(argv, new Reporter());
  if (argv[2] === 'gpu-check') return gpuCheckMain(argv);
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

  let threads = Math.min(opts.threads, opts.maxThreads ?? opts.threads);
  if (threads < opts.threads)
    log.warn(
      `--threads ${opts.threads} is capped to ${threads} by --max-threads ${opts.maxThreads}`,
    );
  let backend: BackendInfo;
  try {
    backend = await initBackend({
      backend: opts.backend ?? 'auto',
      // The worker reads tensors asynchronously: auto may take a GPU (webgpu included).
      preferGpu: true,
      ...(opts.gpu === undefined ? {} : { gpu: opts.gpu }),
      // What --max-threads leaves each data-parallel replica.
      ...(opts.maxThreads === undefined
        ? {}
        : { threadsPerReplica: Math.max(1, Math.floor(opts.maxThreads / threads)) }),
    });
  } catch (err) {
    if (err instanceof BackendUnavailableError) {
      log.error(err.message);
      return EXIT.backend;
    }
    throw err;
  }
  if (backend.warning) log.warn(backend.warning);
  if (backend.name === 'webgpu' && threads > 1) {
    log.warn(
      `--threads ${threads} is 1 on webgpu: one device trains; replicas would share the GPU`,
    );
    threads = 1;
  }

  const hardware: Hello['hardware'] = {
    cpus: Math.max(1, availableParallelism()),
    memoryBytes: totalmem(),
    ...(backend.adapter
      ? { gpu: { index: backend.adapter.index, name: backend.adapter.name.slice(0, 200) } }
      : opts.gpu === undefined
        ? {}
        : { gpu: { index: opts.gpu } }),
    threads,
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
      threads,
      exitWhenIdle: opts.exitWhenIdle,
      workDir,
      backend,
      hardware,
      log,
      controls: new Controls(
        opts.maxMemoryMb === undefined ? {} : { maxMemoryMb: opts.maxMemoryMb },
      ),
    });
    // Refuse a hello the coordinator would reject (a token of the wrong shape, a long name).
    const check = parseFrame(JSON.stringify(worker.hello()), 'worker');
    if (!check.ok) {
      log.error(`invalid settings: ${check.message.replace(/^hello: /, '')}`);
      return EXIT.error;
    }
    const skipped = backend.skipped.map((s) => `${s.name}: ${s.reason}`).join('; ');
    log.info(
      `worker ${name} ${VERSION}: backend ${describeBackend(backend)}${skipped ? ` (skipped ${skipped})` : ''}, ${threads} thread(s)${opts.maxThreads === undefined ? '' : ` (at most ${opts.maxThreads} compute threads)`}${opts.maxMemoryMb === undefined ? '' : `, at most ${opts.maxMemoryMb} MiB`}, objective ${opts.objective}, work dir ${workDir.root}`,
    );
    const control = new ControlServer(controlSocketPath(workDir.root), (command) => {
      if (command === 'pause') worker.pause('worker pause');
      else if (command === 'resume') worker.resume('worker resume');
      else if (command === 'finish') worker.finish('worker finish');
      return worker.status();
    });
    try {
      await control.listen();
      log.info(
        `pause, resume, finish: \`worker pause|resume|finish|status --work-dir ${workDir.root}\`, or SIGUSR1 / SIGUSR2 to pid ${process.pid}`,
      );
    } catch (err) {
      log.warn(
        `no local control socket (${(err as Error).message}); SIGUSR1 / SIGUSR2 to pid ${process.pid} still pause and resume`,
      );
    }
    const onPause = () => worker.pause('received SIGUSR1');
    const onResume = () => worker.resume('received SIGUSR2');

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
    process.on('SIGUSR1', onPause);
    process.on('SIGUSR2', onResume);
    try {
      return await worker.run();
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('SIGUSR1', onPause);
      process.off('SIGUSR2', onResume);
      await control.close();
    }
  } finally {
    workDir.close();
  }
}
