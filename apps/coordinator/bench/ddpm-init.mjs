#!/usr/bin/env node
// FM from a converted DDPM checkpoint vs FM from scratch (docs/method.md §7, issue 14): a DDPM
// (epsilon, cosine) monolith is trained on the whole training set of the built-in MNIST at the
// demo's scale (16 px, the micro DiT), converted with convertDdpmToFm, and an FM expert of one
// cluster is trained from it and from random weights with the same batches, seed and learning
// rate; the held-out FM loss (the same noised batch for both) is measured along the way. What a
// run with `initFrom` naming a K = 1 DDPM run does, without the coordinator.
//
// Run after building (`npx turbo run build`): `node apps/coordinator/bench/ddpm-init.mjs`.
// One JSON object per line on stdout (the donor, one per evaluation, a summary); progress on
// stderr; the figure (held-out loss against steps, both curves) goes to INIT_FIGURE.
// Environment:
//   INIT_DONOR_STEPS  DDPM monolith training steps (default 400)
//   INIT_STEPS        FM training steps of each of the two experts (default 300)
//   INIT_EVERY        steps between held-out evaluations (default 25)
//   INIT_CLUSTER      which of the K = 4 clusters the FM experts train on (default 0; seed 1)
//   INIT_EVAL         held-out images of that cluster (default 256)
//   INIT_SEED         seed of the weights, batches, noise and times (default 0)
//   INIT_FIGURE       where the PNG goes (default out/ddpm-init.png)
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { clusterDataset, computeFeatures, createRng, loadBuiltinDataset } from '@archipelago/data';
import { deriveSeed } from '@archipelago/diffusion';
import {
  convertDdpmToFm,
  ditConfigFromPreset,
  ExpertTrainer,
  initBackend,
} from '@archipelago/models';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';

const DONOR_STEPS = Number(process.env.INIT_DONOR_STEPS ?? 400);
const STEPS = Number(process.env.INIT_STEPS ?? 300);
const EVERY = Number(process.env.INIT_EVERY ?? 25);
const CLUSTER = Number(process.env.INIT_CLUSTER ?? 0);
const EVAL = Number(process.env.INIT_EVAL ?? 256);
const SEED = Number(process.env.INIT_SEED ?? 0);
const FIGURE = process.env.INIT_FIGURE ?? 'out/ddpm-init.png';
// The demo's training settings (apps/coordinator/src/demo.ts DEMO_DEFAULTS, the worker's warm-up),
// unconditional.
const RESOLUTION = 16;
const BATCH = 32;
const LEARNING_RATE = 2e-3;
const EVAL_SEED = 12345;
const note = (line) => process.stderr.write(`${line}\n`);
const emit = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);

const started = performance.now();
await initBackend({ backend: 'wasm' });

// ---- Data: the demo's clustering (PCA features, K = 4, seed 1); the cluster's held-out images
// are held out from the donor too.
const images = await loadBuiltinDataset('mnist', { resolution: RESOLUTION });
const features = await computeFeatures(images, { seed: 1 });
const clusters = await clusterDataset(features.features, features.n, features.d, { k: 4, seed: 1 });
const size = RESOLUTION * RESOLUTION;
const members = [];
for (let i = 0; i < images.count; i++) if (clusters.assignments[i] === CLUSTER) members.push(i);
const rng = createRng(deriveSeed(SEED, 'split'));
for (let i = members.length - 1; i > 0; i--) {
  const j = rng.int(i + 1);
  [members[i], members[j]] = [members[j], members[i]];
}
const heldOut = new Set(members.slice(0, EVAL));
const clusterTrain = members.slice(EVAL);
const all = Array.from({ length: images.count }, (_, i) => i).filter((i) => !heldOut.has(i));
const toFloat = (rows) => {
  const out = new Float32Array(rows.length * size);
  rows.forEach((r, i) => {
    for (let p = 0; p < size; p++) out[i * size + p] = images.pixels[r * size + p] / 127.5 - 1;
  });
  return out;
};
const evalX = { data: toFloat([...heldOut]), shape: [heldOut.size, RESOLUTION, RESOLUTION, 1] };
note(
  `donor: ${all.length} images; cluster ${CLUSTER}: ${clusterTrain.length} train, ${EVAL} held out`,
);

const config = ditConfigFromPreset('micro', {
  imageSize: RESOLUTION,
  channels: 1,
  numClasses: 0,
  patchSize: 4,
});
const network = { kind: 'dit', config };

/** Train `trainer` for `steps` on batches of `rows` (indices from `seedLabel`), calling `each`. */
async function train(trainer, rows, steps, seedLabel, each) {
  const batchRng = createRng(deriveSeed(SEED, seedLabel));
  const warmup = Math.max(1, Math.min(100, Math.ceil(steps / 10)));
  const x = new Float32Array(BATCH * size);
  const data = images.pixels;
  for (let s = 0; s < steps; s++) {
    for (let i = 0; i < BATCH; i++) {
      const r = rows[batchRng.int(rows.length)];
      for (let p = 0; p < size; p++) x[i * size + p] = data[r * size + p] / 127.5 - 1;
    }
    trainer.learningRate = LEARNING_RATE * Math.min(1, (s + 1) / warmup);
    const batch = tf.tensor4d(x, [BATCH, RESOLUTION, RESOLUTION, 1]);
    await trainer.step(batch);
    batch.dispose();
    await each?.(s + 1);
  }
}

// ---- The donor: a DDPM monolith on every training image.
note(`training the DDPM donor for ${DONOR_STEPS} steps`);
const donorStart = performance.now();
const donor = await ExpertTrainer.create({
  network,
  objective: { name: 'ddpm', schedule: { kind: 'cosine' } },
  optimizer: { learningRate: LEARNING_RATE },
  seed: SEED,
});
await train(donor, all, DONOR_STEPS, 'donor-batches');
const donorBytes = await donor.save();
await donor.dispose();
const init = await convertDdpmToFm(donorBytes);
emit({
  kind: 'donor',
  objective: 'ddpm',
  steps: DONOR_STEPS,
  images: all.length,
  seconds: (performance.now() - donorStart) / 1000,
});

// ---- The two FM experts of the cluster: the same batches, seed and schedule of learning rates.
const fm = { name: 'fm', timeSampling: { kind: 'uniform' } };
const curves = {};
for (const [name, from] of [
  ['converted', { init }],
  ['scratch', {}],
]) {
  note(`training FM (${name}) for ${STEPS} steps`);
  const trainer = await ExpertTrainer.create({
    network,
    objective: fm,
    optimizer: { learningRate: LEARNING_RATE },
    seed: SEED + 1,
    ...from,
  });
  const curve = [[0, trainer.evalLoss(evalX, EVAL_SEED)]];
  await train(trainer, clusterTrain, STEPS, 'fm-batches', (s) => {
    if (s % EVERY !== 0 && s !== STEPS) return;
    const loss = trainer.evalLoss(evalX, EVAL_SEED);
    curve.push([s, loss]);
    emit({ kind: 'eval', init: name, step: s, heldOutLoss: loss });
  });
  curves[name] = curve;
  await trainer.dispose();
}

// ---- Summary: steps each needs to reach a loss, and the loss ratio at equal steps.
const reach = (curve, target) => curve.find(([, l]) => l <= target)?.[0] ?? null;
const scratchFinal = curves.scratch.at(-1)[1];
const targets = [0.5, 0.75, 1].map((f) => {
  // Fractions of the way from the step-0 loss to scratch's final loss.
  const target = curves.scratch[0][1] - f * (curves.scratch[0][1] - scratchFinal);
  return {
    target,
    convertedSteps: reach(curves.converted, target),
    scratchSteps: reach(curves.scratch, target),
  };
});
emit({
  kind: 'summary',
  donorSteps: DONOR_STEPS,
  steps: STEPS,
  cluster: CLUSTER,
  seed: SEED,
  finalLoss: { converted: curves.converted.at(-1)[1], scratch: scratchFinal },
  reach: targets,
  seconds: (performance.now() - started) / 1000,
});

// ---- Figure: held-out FM loss against steps.
const W = 640;
const H = 400;
const pad = 50;
const losses = [...curves.converted, ...curves.scratch].map(([, l]) => l);
const [lo, hi] = [Math.min(...losses), Math.max(...losses)];
const px = (s) => pad + ((W - 2 * pad) * s) / STEPS;
const py = (l) => H - pad - ((H - 2 * pad) * (l - lo)) / (hi - lo || 1);
const line = (curve, colour) =>
  `<polyline fill="none" stroke="${colour}" stroke-width="2" points="${curve
    .map(([s, l]) => `${px(s).toFixed(1)},${py(l).toFixed(1)}`)
    .join(' ')}"/>`;
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">
<rect width="100%" height="100%" fill="white"/>
<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="black"/>
<line x1="${pad}" y1="${pad}" x2="${pad}" y2="${H - pad}" stroke="black"/>
<text x="${W / 2}" y="${H - 12}" font-size="14" text-anchor="middle" font-family="sans-serif">FM training step (cluster ${CLUSTER}, seed ${SEED})</text>
<text x="${pad}" y="${pad - 18}" font-size="14" font-family="sans-serif">held-out FM loss ${hi.toFixed(3)} (top) to ${lo.toFixed(3)} (bottom)</text>
${line(curves.scratch, '#888888')}${line(curves.converted, '#c0392b')}
<text x="${W - pad}" y="${pad + 20}" font-size="14" text-anchor="end" font-family="sans-serif" fill="#c0392b">from the converted DDPM monolith (${DONOR_STEPS} steps)</text>
<text x="${W - pad}" y="${pad + 38}" font-size="14" text-anchor="end" font-family="sans-serif" fill="#888888">from scratch</text>
</svg>`;
await mkdir(path.dirname(FIGURE), { recursive: true });
await sharp(Buffer.from(svg)).png().toFile(FIGURE);
note(`figure: ${FIGURE}`);
