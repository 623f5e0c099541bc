/**
 * `worker gpu-check`: what a volunteer's machine trains at, in at most `--budget-s` seconds
 * (default 300), as JSON lines on stdout (progress on stderr). docs/gpu-backends.md "The GPU
 * check" describes each record.
 *
 * Each backend measures in its own process (gpu-check-child.ts). The presets run smallest first
 * and, within one, the backend that was fastest on the previous preset first; before each
 * (backend, preset) the time it needs is estimated from that backend's previous preset, scaled by
 * the DiT's FLOPs, and what does not fit in the time left is skipped, saying so: slow backends on
 * big presets go first. A measurement still running at the deadline is stopped (its process
 * killed). The summary gives each backend's speedup over wasm per preset and whether the target,
 * 10x wasm per step at `small`, is met.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  BACKENDS,
  type BackendName,
  DIT_PRESET_NAMES,
  type DiTPresetName,
  ditConfigFromPreset,
} from '@archipelago/models';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { EXIT } from './exit-codes.js';
import { type ChildCommand, RECORD_PREFIX } from './gpu-check-protocol.js';
import { VERSION } from './version.js';

export interface GpuCheckOptions {
  backends: BackendName[];
  presets: DiTPresetName[];
  budgetS: number;
  gpu?: number;
  batch: number;
  imageSize: number;
  channels: number;
  sampleSteps: number;
}

/** The target of issue 15: a GPU backend at least this many times wasm's speed per step... */
export const TARGET_SPEEDUP = 10;
/** ...at this preset. */
export const TARGET_PRESET = 'small';
const GPU_BACKENDS: readonly BackendName[] = ['tensorflow-gpu', 'webgpu'];
/** Kept back from the budget for the summary and stopping the processes. */
const RESERVE_MS = 3000;
/**
 * A backend's first measurement has no estimate: it may take this share of the time left (at
 * least {@link FIRST_CELL_MIN_MS}), so that one slow starter (tensorflow-gpu compiling its
 * kernels for minutes on a GPU it has none for) cannot take the whole budget.
 */
const FIRST_CELL_SHARE = 0.4;
const FIRST_CELL_MIN_MS = 30_000;

const list =
  <T extends string>(flag: string, valid: readonly T[]) =>
  (value: string): T[] => {
    const items = value.split(',').map((s) => s.trim());
    for (const item of items) {
      if (!(valid as readonly string[]).includes(item))
        throw new InvalidArgumentError(`${flag}: unknown "${item}"; valid: ${valid.join(', ')}`);
    }
    return [...new Set(items)] as T[];
  };

const intAtLeast = (flag: string, min: number) => (value: string) => {
  if (!/^\d+$/.test(value) || Number(value) < min)
    throw new InvalidArgumentError(`${flag} must be an integer >= ${min}, got "${value}"`);
  return Number(value);
};

export function buildGpuCheckCli(): Command {
  return new Command('worker gpu-check')
    .description(
      'Measure training and sampling speed per backend and model preset (JSON lines on stdout, progress on stderr), within a time budget',
    )
    .addOption(
      new Option('--backends <list>', 'backends to measure, comma-separated')
        .argParser(list('--backends', BACKENDS))
        .default(['webgpu', 'wasm', 'tensorflow-gpu'], 'webgpu,wasm,tensorflow-gpu'),
    )
    .addOption(
      new Option('--presets <list>', 'DiT presets to measure, comma-separated')
        .argParser(list('--presets', DIT_PRESET_NAMES))
        .default(['micro', 'tiny', 'small', 'base'], 'micro,tiny,small,base'),
    )
    .addOption(
      new Option('--budget-s <s>', 'total wall time; what does not fit is skipped')
        .argParser(intAtLeast('--budget-s', 1))
        .default(300),
    )
    .addOption(
      new Option(
        '--gpu <index>',
        'WebGPU adapter N (webgpu) and CUDA device N (tensorflow-gpu)',
      ).argParser(intAtLeast('--gpu', 0)),
    )
    .addOption(
      new Option('--batch <n>', 'images per training step and per sample batch')
        .argParser(intAtLeast('--batch', 1))
        .default(32),
    )
    .addOption(
      new Option('--image-size <px>', 'image side (32: 256 tokens at patch 2)')
        .argParser(intAtLeast('--image-size', 4))
        .default(32),
    )
    .addOption(
      new Option('--channels <n>', 'image channels')
        .argParser(intAtLeast('--channels', 1))
        .default(3),
    )
    .addOption(
      new Option('--sample-steps <n>', 'sampler steps that sampling images/s is given for')
        .argParser(intAtLeast('--sample-steps', 1))
        .default(16),
    )
    .showHelpAfterError('(run worker gpu-check --help for usage)');
}

/**
 * Forward FLOPs per image of the preset's DiT (matrix products only: patch embedding, q k v and
 * output projections, the MLP, attention's two batched products, the final layer). A training
 * step is about 3x this. What the budget's estimates scale by.
 */
export function forwardFlopsPerImage(
  preset: DiTPresetName,
  imageSize: number,
  channels: number,
): number {
  const c = ditConfigFromPreset(preset, { imageSize, channels, numClasses: 0 });
  const t = (imageSize / c.patchSize) ** 2;
  const d = c.hidden;
  const patch = c.patchSize * c.patchSize * channels;
  const block = 2 * t * (4 * d * d + 2 * c.mlpRatio * d * d) + 4 * t * t * d;
  return 2 * t * patch * d * 2 + c.depth * block;
}

type Rec = Record<string, unknown> & { type: string };

interface Measured {
  flops: number;
  createMs: number;
  /** The first warm-up step (it compiles the kernels). */
  warmupMs: number;
  msPerStep: number;
  sampleMs: number;
}

/** One backend's measuring process. */
class Child {
  private readonly proc: ChildProcess;
  private readonly records: Rec[] = [];
  private wake: (() => void) | null = null;
  exited: string | null = null;

  constructor(
    readonly backend: BackendName,
    private readonly onRecord: (r: Rec) => void,
  ) {
    const script = fileURLToPath(new URL('./gpu-check-child.js', import.meta.url));
    this.proc = spawn(process.execPath, [script], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: this.proc.stdout! });
    lines.on('line', (line) => {
      if (!line.startsWith(RECORD_PREFIX)) {
        // A library's own print to stdout: not a record; stdout is for records only.
        process.stderr.write(`${line}\n`);
        return;
      }
      const r = JSON.parse(line.slice(RECORD_PREFIX.length)) as Rec;
      if (r.type !== 'done') this.onRecord(r);
      this.records.push(r);
      this.wake?.();
    });
    this.proc.on('exit', (code, signal) => {
      this.exited = signal ? `signal ${signal}` : `exit code ${code}`;
      this.wake?.();
    });
    this.proc.stdin!.on('error', () => {});
  }

  /**
   * Sends `command` and returns its records, or `stopped` when `deadline` (epoch ms) came first
   * (the process is killed) or the process ended (crashed) before answering.
   */
  async request(
    command: ChildCommand,
    deadline: number,
  ): Promise<{ records: Rec[]; stopped: null | 'deadline' | string }> {
    this.records.length = 0;
    this.proc.stdin!.write(`${JSON.stringify(command)}\n`);
    let timedOut = false;
    const timer = setTimeout(
      () => {
        timedOut = true;
        this.proc.kill('SIGKILL');
      },
      Math.max(0, deadline - Date.now()),
    );
    try {
      for (;;) {
        if (this.records.at(-1)?.type === 'done')
          return { records: this.records.slice(0, -1), stopped: null };
        if (this.exited !== null)
          return { records: [...this.records], stopped: timedOut ? 'deadline' : this.exited };
        await new Promise<void>((r) => {
          this.wake = r;
        });
      }
    } finally {
      clearTimeout(timer);
      this.wake = null;
    }
  }

  /** Ends the process: stdin closed (it exits by itself), killed if it has not within 2 s. */
  async close(): Promise<void> {
    if (this.exited !== null) return;
    this.proc.stdin!.end();
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 2000);
    await new Promise<void>((r) => {
      if (this.exited !== null) r();
      else this.proc.once('exit', () => r());
    });
    clearTimeout(timer);
  }
}

const round = (x: number, digits = 1) => Number(x.toFixed(digits));

/** Runs the check; `emit` gets each record. Returns the summary. */
export async function runGpuCheck(
  options: GpuCheckOptions,
  emit: (r: Rec) => void,
  progress: (message: string) => void = () => {},
): Promise<Rec> {
  const started = Date.now();
  const deadline = started + options.budgetS * 1000 - RESERVE_MS;
  const left = () => deadline - Date.now();
  const presets = [...options.presets].sort(
    (a, b) =>
      forwardFlopsPerImage(a, options.imageSize, options.channels) -
      forwardFlopsPerImage(b, options.imageSize, options.channels),
  );
  emit({
    type: 'start',
    version: VERSION,
    budgetS: options.budgetS,
    backends: options.backends,
    presets,
    batch: options.batch,
    imageSize: options.imageSize,
    channels: options.channels,
    sampleSteps: options.sampleSteps,
    ...(options.gpu === undefined ? {} : { gpu: options.gpu }),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: availableParallelism(),
  });

  const train = new Map<string, Rec>();
  const children = new Map<BackendName, Child>();
  const loaded: Rec[] = [];
  try {
    for (const backend of options.backends) {
      if (left() <= 0) {
        emit({
          type: 'backend',
          backend,
          loaded: false,
          reason: 'budget: no time left to load it',
        });
        continue;
      }
      progress(`loading ${backend}`);
      const child = new Child(backend, (r) => {
        if (r.type === 'train') train.set(`${r.backend}/${r.preset}`, r);
        emit(r);
      });
      const load: ChildCommand = {
        cmd: 'load',
        backend,
        ...(options.gpu !== undefined && GPU_BACKENDS.includes(backend)
          ? { gpu: options.gpu }
          : {}),
      };
      const { records, stopped } = await child.request(load, deadline);
      const record = records.find((r) => r.type === 'backend');
      if (stopped !== null) {
        emit({
          type: 'backend',
          backend,
          loaded: false,
          reason:
            stopped === 'deadline'
              ? 'budget: still loading at the deadline'
              : `process ended (${stopped})`,
        });
      }
      if (record?.loaded === true) {
        children.set(backend, child);
        loaded.push(record);
      } else await child.close();
    }

    const measured = new Map<BackendName, Measured>();
    for (const preset of presets) {
      const flops = forwardFlopsPerImage(preset, options.imageSize, options.channels);
      // Fastest per FLOP on the previous preset first; not measured yet: in the order given.
      const order = options.backends
        .map((b, i) => ({ b, i, m: measured.get(b) }))
        .sort((x, y) =>
          x.m && y.m
            ? x.m.msPerStep / x.m.flops - y.m.msPerStep / y.m.flops
            : x.m
              ? -1
              : y.m
                ? 1
                : x.i - y.i,
        );
      for (const { b: backend } of order) {
        const key = { backend, preset };
        const skip = (reason: string, extra: Record<string, unknown> = {}) => {
          const r = { type: 'train', ...key, status: 'skipped', reason, ...extra };
          train.set(`${backend}/${preset}`, r);
          emit(r);
          emit({ ...r, type: 'sample' });
        };
        const child = children.get(backend);
        if (!child) {
          skip('backend not loaded');
          continue;
        }
        if (child.exited !== null) {
          skip(`its process was stopped (${child.exited})`);
          continue;
        }
        const prev = measured.get(backend);
        if (left() <= 0) {
          skip('budget', { remainingS: 0 });
          continue;
        }
        // Create, warm up, 3 timed steps and the sampler (3 forward passes at least), scaled from
        // the previous preset by FLOPs (conservative: bigger products run nearer peak); unknown
        // for a backend's first preset (it runs, within its share of the budget).
        // The child takes a second warm-up step where the first was under 2 s.
        const r = prev ? flops / prev.flops : 0;
        const estimateMs = prev
          ? r * (prev.createMs + prev.warmupMs + 3 * prev.msPerStep + prev.sampleMs) +
            (r * prev.warmupMs < 2000 ? r * prev.msPerStep : 0)
          : null;
        if (estimateMs !== null && estimateMs > left()) {
          skip('budget', {
            estimatedS: round(estimateMs / 1000),
            remainingS: round(left() / 1000),
          });
          continue;
        }
        const cellDeadline =
          estimateMs === null
            ? Math.min(
                deadline,
                Date.now() + Math.max(FIRST_CELL_MIN_MS, FIRST_CELL_SHARE * left()),
              )
            : deadline;
        progress(
          `${backend} ${preset}${estimateMs === null ? '' : ` (estimated ${round(estimateMs / 1000)} s)`}`,
        );
        const { records, stopped } = await child.request(
          {
            cmd: 'cell',
            preset,
            imageSize: options.imageSize,
            channels: options.channels,
            batch: options.batch,
            sampleSteps: options.sampleSteps,
            deadline: cellDeadline,
          },
          cellDeadline + RESERVE_MS / 3,
        );
        const t = records.find((r) => r.type === 'train');
        const s = records.find((r) => r.type === 'sample');
        if (stopped !== null) {
          const reason =
            stopped !== 'deadline'
              ? `process ended (${stopped})`
              : cellDeadline < deadline
                ? `budget: a first measurement longer than its share of the budget (${round((cellDeadline - started) / 1000)} s after the start)`
                : 'budget: stopped at the deadline';
          const r = { ...key, status: stopped === 'deadline' ? 'stopped' : 'failed', reason };
          if (!t) {
            train.set(`${backend}/${preset}`, { type: 'train', ...r });
            emit({ type: 'train', ...r });
          }
          if (!s) emit({ type: 'sample', ...r });
        }
        if (t?.status === 'ok') {
          const warm = t.warmupMs as number[];
          measured.set(backend, {
            flops,
            createMs: t.createMs as number,
            warmupMs: warm[0]!,
            msPerStep: t.msPerStep as number,
            sampleMs:
              s?.status === 'ok'
                ? (s.warmupMs as number) + 2 * (s.msPerEvaluation as number)
                : (t.msPerStep as number) * 2,
          });
        }
      }
    }
  } finally {
    await Promise.all([...children.values()].map((c) => c.close()));
  }

  // Speedup over wasm per step, per preset.
  const speedup: Record<string, Record<string, number>> = {};
  const msPerStep: Record<string, Record<string, number>> = {};
  for (const preset of presets) {
    const wasm = train.get(`wasm/${preset}`);
    for (const backend of options.backends) {
      const t = train.get(`${backend}/${preset}`);
      if (t?.status !== 'ok') continue;
      msPerStep[preset] = { ...msPerStep[preset], [backend]: t.msPerStep as number };
      if (wasm?.status === 'ok' && backend !== 'wasm') {
        const x = round((wasm.msPerStep as number) / (t.msPerStep as number), 2);
        speedup[preset] = { ...speedup[preset], [backend]: x };
      }
    }
  }
  const gpuSpeedups = Object.fromEntries(
    GPU_BACKENDS.filter((b) => speedup[TARGET_PRESET]?.[b] !== undefined).map((b) => [
      b,
      speedup[TARGET_PRESET]![b]!,
    ]),
  );
  const measuredGpu = Object.keys(gpuSpeedups).length > 0;
  const software = loaded.some(
    (r) => r.backend === 'webgpu' && (r.adapter as { software?: boolean } | undefined)?.software,
  );
  const wallS = round((Date.now() - started) / 1000);
  const summary: Rec = {
    type: 'summary',
    wallS,
    budgetS: options.budgetS,
    withinBudget: wallS <= options.budgetS,
    msPerStep,
    speedupOverWasm: speedup,
    target: {
      preset: TARGET_PRESET,
      minSpeedupOverWasm: TARGET_SPEEDUP,
      speedups: gpuSpeedups,
      met: measuredGpu ? Object.values(gpuSpeedups).some((x) => x >= TARGET_SPEEDUP) : null,
      ...(measuredGpu
        ? {}
        : {
            reason: `no GPU backend and wasm both measured at ${TARGET_PRESET} (${
              options.presets.includes(TARGET_PRESET) ? 'see the train records' : 'not in --presets'
            })`,
          }),
      ...(software
        ? { note: 'webgpu ran on a software adapter (a CPU rasteriser): the target is for a GPU' }
        : {}),
    },
  };
  emit(summary);
  return summary;
}

/** `worker gpu-check [options]`: parse, run, print. Exit 0 once the summary is out. */
export async function gpuCheckMain(argv: string[]): Promise<number> {
  const program = buildGpuCheckCli().exitOverride();
  try {
    program.parse(argv.slice(0, 2).concat(argv.slice(3)));
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.error;
    throw err;
  }
  const options = program.opts<GpuCheckOptions>();
  await runGpuCheck(
    options,
    (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
    (m) => process.stderr.write(`gpu-check: ${m}\n`),
  );
  return EXIT.ok;
}
