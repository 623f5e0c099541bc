#!/usr/bin/env node
// Training-step time of the REFERENCE DiT on each available TensorFlow.js backend, in this thread.
// Reference: batch 64 of 28x28x1 images in 4x4 patches (49 tokens), hidden 128, depth 4, 4 heads,
// MLP ratio 4, AdaLN-Single, eps-prediction MSE (cosine schedule) on random data and random
// integer tau, Adam (lr 1e-4). The same model in PyTorch: bench/torch_reference.py.
//
// Run after building: `npx tsc -p tsconfig.build.json` in packages/models, then
// `node bench/train-step.mjs`. One JSON object per line on stdout, progress on stderr.
// Environment:
//   BENCH_BACKENDS  comma list (default "wasm,cpu"); unavailable ones are reported and skipped
//   BENCH_STEPS     timed steps on wasm/tensorflow (default 10); the pure-JS cpu backend takes
//                   tens of seconds per step, so it times BENCH_CPU_STEPS (default 2)
//   BENCH_WARMUP    warm-up steps (default 3; 1 on cpu)
//   BENCH_PROFILE=1 also print per-kernel times of the timed steps to stderr
import * as tf from '@tensorflow/tfjs-core';
import { createTrainer, DiT, initBackend } from '../dist/index.js';

const BATCH = 64;
const CONFIG = {
  imageSize: 28,
  channels: 1,
  patchSize: 4,
  hidden: 128,
  depth: 4,
  heads: 4,
  mlpRatio: 4,
  numClasses: 0,
  learnSigma: false,
};
const backends = (process.env.BENCH_BACKENDS ?? 'wasm,cpu').split(',');
const note = (line) => process.stderr.write(`${line}\n`);

/** Wraps every kernel of a backend to accumulate wall time per kernel name while `on`. */
function kernelProfiler(backend) {
  const totals = new Map();
  const state = { on: false };
  for (const k of tf.getKernelsForBackend(backend)) {
    const inner = k.kernelFunc;
    tf.unregisterKernel(k.kernelName, backend);
    tf.registerKernel({
      ...k,
      kernelFunc: (args) => {
        if (!state.on) return inner(args);
        const t0 = performance.now();
        const out = inner(args);
        const e = totals.get(k.kernelName) ?? { calls: 0, ms: 0 };
        e.calls += 1;
        e.ms += performance.now() - t0;
        totals.set(k.kernelName, e);
        return out;
      },
    });
  }
  return { state, totals };
}

async function bench(backend) {
  try {
    await initBackend({ backend });
  } catch (err) {
    note(`${backend}: skipped (${err.message})`);
    return;
  }
  const slow = backend === 'cpu';
  const steps = Number(
    (slow ? process.env.BENCH_CPU_STEPS : process.env.BENCH_STEPS) ?? (slow ? 2 : 10),
  );
  const warmup = Number(process.env.BENCH_WARMUP ?? (slow ? 1 : 3));
  const model = new DiT(CONFIG, 0);
  const trainer = createTrainer({ params: model.params, learningRate: 1e-4 });
  // One fixed random batch: data generation is not part of the step.
  const x0 = tf.randomUniform([BATCH, 28, 28, 1], -1, 1, 'float32', 1);
  const eps = tf.randomNormal([BATCH, 28, 28, 1], 0, 1, 'float32', 2);
  const n = tf.randomUniform([BATCH], 0, 1000, 'int32', 3);
  const { xt, tau } = tf.tidy(() => {
    const t = tf.cast(n, 'float32');
    const f = tf.cos(tf.mul(tf.div(tf.add(tf.div(t, 1000), 0.008), 1.008), Math.PI / 2));
    const abar = tf.reshape(tf.square(f), [BATCH, 1, 1, 1]);
    return {
      xt: tf.add(tf.mul(tf.sqrt(abar), x0), tf.mul(tf.sqrt(tf.sub(1, abar)), eps)),
      tau: t,
    };
  });
  const lossFn = () => tf.mean(tf.square(tf.sub(model.apply(xt, tau), eps)));
  const profiler = process.env.BENCH_PROFILE === '1' ? kernelProfiler(tf.getBackend()) : null;

  note(`${backend}: ${model.countParams()} parameters; ${warmup} warm-up + ${steps} timed steps`);
  for (let i = 0; i < warmup; i++) trainer.step(lossFn);
  if (profiler) profiler.state.on = true;
  const times = [];
  let loss = 0;
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    loss = trainer.step(lossFn);
    times.push(performance.now() - t0);
  }
  if (profiler) profiler.state.on = false;
  const ms = times.reduce((a, b) => a + b, 0) / steps;
  const sorted = [...times].sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      name: 'train_step_reference',
      backend,
      threads: 1,
      ms_per_step: Math.round(ms * 10) / 10,
      images_per_s: Math.round((BATCH / ms) * 1000 * 10) / 10,
      ms_min: Math.round(sorted[0] * 10) / 10,
      ms_median: Math.round(sorted[sorted.length >> 1] * 10) / 10,
      steps,
      batch: BATCH,
      params: model.countParams(),
      loss: Math.round(loss * 1e4) / 1e4,
    }),
  );
  if (profiler) {
    const rows = [...profiler.totals].sort((a, b) => b[1].ms - a[1].ms);
    const kernelMs = rows.reduce((a, [, e]) => a + e.ms, 0) / steps;
    note(
      `${backend} kernels: ${kernelMs.toFixed(1)} ms/step; JS outside kernels ${(ms - kernelMs).toFixed(1)} ms/step`,
    );
    for (const [name, e] of rows.slice(0, 15)) {
      note(
        `  ${name.padEnd(24)} ${(e.ms / steps).toFixed(1).padStart(7)} ms ${String(e.calls / steps).padStart(5)} calls`,
      );
    }
  }
  tf.dispose([x0, eps, n, xt, tau]);
  trainer.dispose();
  model.dispose();
}

for (const backend of backends) await bench(backend);
