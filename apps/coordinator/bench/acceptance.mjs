#!/usr/bin/env node
// The acceptance test's cost (docs/method.md §12), one JSON object per line on stdout:
// - reference_fit: the closed-form reference of a 60,000-image shard at 28x28 (full MNIST), and of
//   a demo-sized shard (2,500 images at 16x16);
// - acceptance_vs_training: the cost of judging one demo-shaped expert (fitting the references of
//   its shard and of 3 neighbours, scoring it on its held-out images at every level through the
//   production conversion, and on 256 held-out images of each neighbour) against the cost of
//   training that expert (the demo's 1,000 steps at batch 32, from the measured time per step),
//   as a ratio: BOINC's replication costs 1 (a second training run), so below 1 is the point.
// Progress on stderr.
import os from 'node:os';
import { loadBuiltinDataset, loadMnistFull } from '@archipelago/data';
import { LinearMmseDenoiser, velocityExpert } from '@archipelago/diffusion';
import { ditConfigFromPreset, ExpertTrainer, initBackend } from '@archipelago/models';
import {
  drawsFor,
  HIGH_TIMES,
  MID_TIMES,
  OTHER_SHARD_IMAGES,
  x0Errors,
} from '../dist/services/acceptance.js';
import { DEFAULT_INFERENCE } from '../dist/services/ensembles.js';
import { fitReference, toUnitRange } from '../dist/services/reference-denoisers.js';

const backend = await initBackend({ backend: process.env.BENCH_ACCEPTANCE_BACKEND ?? 'wasm' });
const common = { cores: os.cpus().length, node: process.version, backend: backend.name };
const emit = (record) => process.stdout.write(`${JSON.stringify({ ...record, ...common })}\n`);
const note = (line) => process.stderr.write(`${line}\n`);
const seconds = (t0) => (performance.now() - t0) / 1000;
const round = (x, digits = 3) => Number(x.toFixed(digits));

/** The demo's expert: micro DiT on 16x16 digits with 4x4 patches, batch 32, 1,000 steps. */
const DEMO = { size: 16, patchSize: 4, batch: 32, steps: 1000, shards: 4 };
/** Training steps timed (after warm-up) to estimate the training time. */
const TIMED_STEPS = Number(process.env.BENCH_ACCEPTANCE_STEPS ?? 40);

/** Images `idx` of a set as a new set. */
function pick(set, idx) {
  const d = set.height * set.width * set.channels;
  const pixels = new Uint8Array(idx.length * d);
  for (const [j, i] of idx.entries()) pixels.set(set.pixels.subarray(i * d, (i + 1) * d), j * d);
  return { ...set, count: idx.length, pixels, labels: Int32Array.from(idx, (i) => set.labels[i]) };
}

// 1. Reference fits.
note('reference fit: full MNIST (60,000 x 28 x 28)');
const full = await loadMnistFull('train');
let t0 = performance.now();
let fit = await fitReference(full);
emit({
  bench: 'acceptance',
  name: 'reference_fit',
  images: full.count,
  dim: full.height * full.width * full.channels,
  kind: fit.kind,
  seconds: round(seconds(t0)),
});

// 2. One demo-shaped expert: its shards are the 10,000 built-in digits split in 4 by label (the
// cost does not depend on which digits), 2% held out as the coordinator does.
const mnist = await loadBuiltinDataset('mnist', { resolution: DEMO.size });
const shards = [];
for (let k = 0; k < DEMO.shards; k++) {
  const idx = [];
  for (let i = 0; i < mnist.count; i++) if (mnist.labels[i] % DEMO.shards === k) idx.push(i);
  const nVal = Math.round(idx.length * 0.02);
  shards.push({ train: pick(mnist, idx.slice(nVal)), val: pick(mnist, idx.slice(0, nVal)) });
}
t0 = performance.now();
fit = await fitReference(shards[0].train);
emit({
  bench: 'acceptance',
  name: 'reference_fit',
  images: shards[0].train.count,
  dim: DEMO.size * DEMO.size,
  kind: fit.kind,
  seconds: round(seconds(t0)),
});

const config = ditConfigFromPreset('micro', {
  imageSize: DEMO.size,
  channels: 1,
  numClasses: 10,
  patchSize: DEMO.patchSize,
});
const objective = { name: 'fm', timeSampling: { kind: 'logit-normal', mean: 0, std: 1 } };
const trainer = await ExpertTrainer.create({
  network: { kind: 'dit', config },
  objective,
  optimizer: { learningRate: 2e-3 },
  seed: 0,
});
const d = DEMO.size * DEMO.size;
const pixels = toUnitRange(shards[0].train);
const batch = new Float32Array(DEMO.batch * d);
const labels = new Int32Array(DEMO.batch);
const step = async (s) => {
  for (let b = 0; b < DEMO.batch; b++) {
    const i = (s * DEMO.batch + b) % shards[0].train.count;
    batch.set(pixels.subarray(i * d, (i + 1) * d), b * d);
    labels[b] = shards[0].train.labels[i];
  }
  await trainer.step({ data: batch, shape: [DEMO.batch, DEMO.size, DEMO.size, 1] }, labels);
};
note(`training ${TIMED_STEPS} steps of the demo expert`);
for (let s = 0; s < 5; s++) await step(s);
t0 = performance.now();
for (let s = 0; s < TIMED_STEPS; s++) await step(s + 5);
const secondsPerStep = seconds(t0) / TIMED_STEPS;
const trainingSeconds = secondsPerStep * DEMO.steps;

note('acceptance test of the expert');
const model = velocityExpert({
  objective,
  network: trainer.network(),
  conversion: {
    mode: DEFAULT_INFERENCE.conversion,
    alphaMin: DEFAULT_INFERENCE.alphaMin,
    x0Clamp: [-DEFAULT_INFERENCE.x0Clamp, DEFAULT_INFERENCE.x0Clamp],
  },
});
const times = [...MID_TIMES, ...HIGH_TIMES];
t0 = performance.now();
let fitSeconds = 0;
let scored = 0;
for (const [k, shard] of shards.entries()) {
  const f0 = performance.now();
  const ref = new LinearMmseDenoiser((await fitReference(shard.train)).moments);
  fitSeconds += seconds(f0);
  const val =
    k === 0
      ? shard.val
      : pick(shard.val, [...Array(Math.min(OTHER_SHARD_IMAGES, shard.val.count)).keys()]);
  await x0Errors(model, ref, toUnitRange(val), [DEMO.size, DEMO.size, 1], times, {
    seed: 1 + k,
    draws: drawsFor(val.count),
    labels: new Int32Array(val.count).fill(10),
  });
  scored += val.count * drawsFor(val.count) * times.length;
  ref.dispose();
}
const acceptanceSeconds = seconds(t0);
await trainer.dispose();
emit({
  bench: 'acceptance',
  name: 'acceptance_vs_training',
  shards: DEMO.shards,
  noisedImagesScored: scored,
  referenceFitSeconds: round(fitSeconds),
  acceptanceSeconds: round(acceptanceSeconds),
  trainingSeconds: round(trainingSeconds, 1),
  trainingSteps: DEMO.steps,
  msPerTrainingStep: round(secondsPerStep * 1000, 1),
  ratio: round(acceptanceSeconds / trainingSeconds, 4),
});
