/**
 * The measuring half of `worker gpu-check` (gpu-check.ts): one process per backend, so that a
 * backend that crashes or hangs (a lost GPU device, a native abort) ends only its own process,
 * and the process's peak RSS is that backend's. It answers JSON commands on stdin, one per line:
 *
 * - `{ cmd: 'load', backend, gpu? }`: loads the backend; one `backend` record.
 * - `{ cmd: 'cell', preset, imageSize, channels, batch, sampleSteps, deadline }`: times training
 *   steps of the preset's DiT (one `train` record) and the Euler sampler on it (one `sample`
 *   record), fitting in before `deadline` (epoch ms).
 *
 * Every command ends with a `done` record. Records go to stdout as `@@gpu-check <json>` lines;
 * anything else a library prints to stdout is not one and the parent passes it on to stderr.
 */
import { createInterface } from 'node:readline';
import { euler, timeGrid, velocityExpert } from '@archipelago/diffusion';
import {
  type BackendName,
  describeBackend,
  ditConfigFromPreset,
  ExpertTrainer,
  initBackend,
} from '@archipelago/models';
import * as tf from '@tensorflow/tfjs-core';
import { type ChildCommand, RECORD_PREFIX } from './gpu-check-protocol.js';

/** A timed run aims at this much wall time per measurement, within the step counts below. */
const TIMED_TARGET_MS = 4000;
const MIN_TIMED_STEPS = 3;
const MAX_TIMED_STEPS = 10;
/** Network evaluations the sampler is timed over (after one warm-up sample). */
const MIN_EVALS = 2;
const MAX_EVALS = 8;

function emit(record: Record<string, unknown>): void {
  process.stdout.write(`${RECORD_PREFIX}${JSON.stringify(record)}\n`);
}

function progress(message: string): void {
  process.stderr.write(`gpu-check: ${message}\n`);
}

const round = (x: number, digits = 1) => Number(x.toFixed(digits));
const mib = (bytes: number) => round(bytes / 2 ** 20);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Peak resident memory of this process so far (MiB). */
function rssPeakMb(): number {
  return round(process.resourceUsage().maxRSS / 1024);
}

/** `[B, S, S, C]` images in [-1, 1], deterministic (no tf random: the same on every backend). */
function images(batch: number, size: number, channels: number) {
  const data = new Float32Array(batch * size * size * channels);
  let s = 12345;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = Math.tanh(2 * Math.sin(i / 11) + (s / 2 ** 32 - 0.5));
  }
  return { data, shape: [batch, size, size, channels] };
}

let backend: BackendName | null = null;

async function load(name: BackendName, gpu: number | undefined): Promise<void> {
  const start = performance.now();
  try {
    const info = await initBackend({ backend: name, ...(gpu === undefined ? {} : { gpu }) });
    // `--backend webgpu` without an adapter falls back to wasm: here that is a failure.
    if (info.name !== name) throw new Error(info.warning ?? `loaded ${info.name} instead`);
    if (
      name === 'tensorflow-gpu' &&
      (tf.backend() as { isUsingGpuDevice?: boolean }).isUsingGpuDevice !== true
    )
      throw new Error('loaded, but libtensorflow sees no CUDA GPU (driver, CUDA 11.2, cuDNN 8.1?)');
    backend = name;
    emit({
      type: 'backend',
      backend: name,
      loaded: true,
      tfBackend: info.tfBackend,
      loadMs: Math.round(performance.now() - start),
      description: describeBackend(info),
      ...(info.gpu === undefined ? {} : { gpu: info.gpu }),
      ...(info.adapter ? { adapter: info.adapter } : {}),
    });
  } catch (err) {
    emit({
      type: 'backend',
      backend: name,
      loaded: false,
      loadMs: Math.round(performance.now() - start),
      reason: (err as Error).message,
    });
  }
}

/** The memory figures the backend reports (`tf.memory()`), in MiB. */
function tensorMemory(): Record<string, number | null> {
  const m = tf.memory() as tf.MemoryInfo & {
    numBytesInGPU?: number;
    numBytesAllocatedInGPU?: number;
  };
  return {
    tensorMb: mib(m.numBytes),
    // webgpu: the Dawn buffers the backend holds, its free pool included: about its peak.
    gpuAllocatedMb: m.numBytesAllocatedInGPU === undefined ? null : mib(m.numBytesAllocatedInGPU),
  };
}

async function cell(c: Extract<ChildCommand, { cmd: 'cell' }>): Promise<void> {
  const key = { backend, preset: c.preset };
  const shape = { batch: c.batch, imageSize: c.imageSize, channels: c.channels };
  const left = () => c.deadline - Date.now();
  const config = ditConfigFromPreset(c.preset, {
    imageSize: c.imageSize,
    channels: c.channels,
    numClasses: 0,
  });
  let trainer: ExpertTrainer | null = null;
  let trained = false;
  try {
    const created = performance.now();
    // As the worker trains an FM expert: Adam, the EMA of the weights, one thread.
    trainer = await ExpertTrainer.create({
      network: { kind: 'dit', config },
      objective: { name: 'fm', timeSampling: { kind: 'logit-normal' } },
      optimizer: { learningRate: 1e-4 },
      ema: { decay: 0.9999 },
      seed: 1,
    });
    const createMs = performance.now() - created;
    const params = [...trainer.getParams().values()].reduce((n, v) => n + v.size, 0);
    const x0 = images(c.batch, c.imageSize, c.channels);
    // Each step ends reading its loss with `await data()`: the GPU's queue has drained.
    const step = async () => {
      const t = performance.now();
      await trainer!.step(x0);
      return performance.now() - t;
    };
    progress(`${backend} ${c.preset}: warm-up step`);
    const warmup = [await step()];
    // A second warm-up where the first was quick (kernels compiled on first use settle).
    if (warmup[0]! < 2000 && left() > 4 * warmup[0]!) warmup.push(await step());
    const w = warmup.at(-1)!;
    // Leave room for the sampler: a warm-up sample and a few evaluations, ~w/3 each.
    const n = Math.max(
      1,
      Math.min(
        MAX_TIMED_STEPS,
        Math.max(MIN_TIMED_STEPS, Math.round(TIMED_TARGET_MS / w)),
        Math.floor((left() - 2 * w) / w),
      ),
    );
    progress(`${backend} ${c.preset}: ${n} timed steps of ~${Math.round(w)} ms`);
    const times: number[] = [];
    for (let i = 0; i < n; i++) times.push(await step());
    const ms = median(times);
    emit({
      type: 'train',
      ...key,
      status: 'ok',
      ...shape,
      tokens: (c.imageSize / config.patchSize) ** 2,
      params,
      createMs: Math.round(createMs),
      warmupMs: warmup.map((t) => Math.round(t)),
      timedSteps: n,
      msPerStep: round(ms),
      msPerStepMin: round(Math.min(...times)),
      msPerStepMax: round(Math.max(...times)),
      imagesPerSec: round((c.batch * 1000) / ms, 2),
      rssPeakMb: rssPeakMb(),
      ...tensorMemory(),
    });
    trained = true;

    // Sampling: the Euler sampler on this FM expert, v(x, t) = net(x, 999 t). Nothing on that
    // path reads a tensor synchronously, so it runs on webgpu as it is; the result is read with
    // `await data()`. Timed over a few evaluations and scaled to `sampleSteps` (linear in them).
    if (left() < w) {
      emit({
        type: 'sample',
        ...key,
        status: 'skipped',
        reason: 'budget',
        remainingS: round(left() / 1000),
      });
      return;
    }
    const model = velocityExpert({
      objective: trainer.objective.config,
      network: trainer.network(),
    });
    const noise = tf.randomNormal(
      [c.batch, c.imageSize, c.imageSize, c.channels],
      0,
      1,
      'float32',
      1,
    );
    const sample = async (evals: number) => {
      const t = performance.now();
      const out = euler(model, noise, timeGrid(evals));
      await out.data();
      out.dispose();
      return performance.now() - t;
    };
    try {
      progress(`${backend} ${c.preset}: sampling`);
      const first = await sample(1);
      const k = Math.max(
        1,
        Math.min(
          MAX_EVALS,
          Math.max(MIN_EVALS, Math.round(TIMED_TARGET_MS / 2 / first)),
          Math.floor((left() - first) / first),
        ),
      );
      const perEval = (await sample(k)) / k;
      emit({
        type: 'sample',
        ...key,
        status: 'ok',
        sampler: 'euler',
        objective: 'fm',
        read: 'await data()',
        batch: c.batch,
        warmupMs: Math.round(first),
        timedEvaluations: k,
        msPerEvaluation: round(perEval),
        sampleSteps: c.sampleSteps,
        imagesPerSec: round((c.batch * 1000) / (perEval * c.sampleSteps), 2),
        rssPeakMb: rssPeakMb(),
        ...tensorMemory(),
      });
    } finally {
      noise.dispose();
    }
  } catch (err) {
    const record = { ...key, status: 'failed', error: (err as Error).message.split('\n')[0] };
    if (!trained) emit({ type: 'train', ...record });
    emit({ type: 'sample', ...record });
  } finally {
    await trainer?.dispose();
  }
}

async function run(): Promise<void> {
  const lines = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const command = JSON.parse(line) as ChildCommand;
    if (command.cmd === 'load') await load(command.backend, command.gpu);
    else if (command.cmd === 'cell') await cell(command);
    emit({ type: 'done' });
  }
}

await run();
// A backend's thread pool must not keep the process alive once stdin has closed.
process.exit(0);
