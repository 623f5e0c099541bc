#!/usr/bin/env node
// Sampling throughput of one expert: images/s for 20 Euler steps of the tiny DiT at 28x28x1,
// as a flow-matching expert and as a DDPM expert through the SNR-matched conversion.
// One JSON object per line on stdout. Needs the built packages.
import os from 'node:os';
import { euler, initialNoise, timeGrid, velocityExpert } from '@archipelago/diffusion';
import * as tf from '@tensorflow/tfjs-core';
import { DiT, ditConfigFromPreset, initBackend } from '../dist/index.js';

const BATCH = Number(process.env.BENCH_SAMPLE_BATCH ?? 64);
const STEPS = 20;
const backend = await initBackend({ backend: process.env.BENCH_SAMPLE_BACKEND ?? 'wasm' });
const dit = new DiT(ditConfigFromPreset('tiny', { imageSize: 28, channels: 1, numClasses: 0 }), 0);
const network = (x, tau) => dit.apply(x, tau);
const grid = timeGrid(STEPS);

for (const objective of ['fm', 'ddpm']) {
  const model = velocityExpert(
    objective === 'fm'
      ? { objective, network }
      : { objective, network, schedule: { kind: 'cosine' } },
  );
  // Warm-up (kernel compilation, allocations), then one timed batch.
  tf.dispose(euler(model, initialNoise([BATCH, 28, 28, 1], 1), timeGrid(2)));
  const xT = initialNoise([BATCH, 28, 28, 1], 2);
  const start = performance.now();
  const x0 = euler(model, xT, grid);
  await x0.data();
  const seconds = (performance.now() - start) / 1000;
  tf.dispose([xT, x0]);
  process.stdout.write(
    `${JSON.stringify({
      name: 'sample_euler20_tiny',
      objective,
      backend: backend.name,
      threads: 1,
      batch: BATCH,
      steps: STEPS,
      images_per_s: Number((BATCH / seconds).toFixed(1)),
      ms_per_step: Number(((seconds * 1000) / STEPS).toFixed(1)),
      cores: os.cpus().length,
    })}\n`,
  );
}
dit.dispose();
