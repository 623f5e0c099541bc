#!/usr/bin/env node
// Training-step throughput of a DiT expert (DDPM eps loss, Adam) per available backend, in the
// calling thread and data-parallel over 2 worker threads. One JSON object per line on stdout,
// progress on stderr. Needs the built package: `npm run build -w @archipelago/models`.
// Environment: BENCH_STEPS (timed steps per run, default 5), BENCH_WARMUP (default 2),
// BENCH_BACKENDS (default "wasm,cpu"; the pure-JS cpu backend takes ~30 s a step, so it runs
// one timed step on one thread).
import os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { ditConfigFromPreset, ExpertTrainer, initBackend } from '../dist/index.js';

const STEPS = Number(process.env.BENCH_STEPS ?? 5);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 2);
const BATCH = 64;
const data = { imageSize: 28, channels: 1, numClasses: 0 };
const CONFIGS = [
  {
    name: 'train_step_reference',
    config: {
      ...data,
      patchSize: 4,
      hidden: 128,
      depth: 4,
      heads: 4,
      mlpRatio: 4,
      learnSigma: false,
    },
  },
  { name: 'train_step_tiny', config: ditConfigFromPreset('tiny', data) },
];

const note = (line) => process.stderr.write(`${line}\n`);
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'wasm,cpu').split(',');

for (const backendName of BACKENDS) {
  let backend;
  try {
    backend = await initBackend({ backend: backendName });
  } catch (err) {
    note(`backend ${backendName} skipped: ${err.message}`);
    continue;
  }
  const slow = backend.name === 'cpu';
  const x0 = tf.randomUniform([BATCH, 28, 28, 1], -1, 1, 'float32', 1);
  for (const { name, config } of slow ? CONFIGS.slice(0, 1) : CONFIGS) {
    for (const threads of slow ? [1] : [1, 2]) {
      const steps = slow ? 1 : STEPS;
      const warmup = slow ? 0 : WARMUP;
      const trainer = await ExpertTrainer.create({
        network: { kind: 'dit', config },
        objective: { name: 'ddpm', schedule: { kind: 'cosine' } },
        optimizer: { learningRate: 1e-4 },
        seed: 0,
        threads,
      });
      try {
        for (let i = 0; i < warmup; i++) await trainer.step(x0);
        const start = performance.now();
        for (let i = 0; i < steps; i++) await trainer.step(x0);
        const msPerStep = (performance.now() - start) / steps;
        note(`${name} threads=${threads}: ${msPerStep.toFixed(0)} ms/step`);
        process.stdout.write(
          `${JSON.stringify({
            name,
            backend: backend.name,
            threads,
            ms_per_step: Number(msPerStep.toFixed(1)),
            images_per_s: Number(((BATCH * 1000) / msPerStep).toFixed(1)),
            batch: BATCH,
            steps,
            cores: os.cpus().length,
            config,
          })}\n`,
        );
      } finally {
        await trainer.dispose();
      }
    }
  }
  x0.dispose();
}
