#!/usr/bin/env node
// Sample quality of DDPM-family experts against an FM expert of the same cluster with the same
// compute (issue 14 point 2; docs/method.md §11, §13): cluster 0 of the demo's clustering of the
// built-in MNIST (16 px, PCA features, K = 4, seed 1), the micro DiT, the same steps, batches,
// weight seed, learning rate, warm-up and EMA for every expert (the settings of bench/x0-error.mjs).
// Each trained expert (its EMA weights, as a checkpoint holds them) is sampled the way the
// coordinator samples it, `velocityExpert` with the manifest's default conversion (SNR-matched,
// alphaMin 0.01, x0 clamp [-1, 1]) and sampler (Heun, 16 steps), from the same noise; the epsilon
// experts are also sampled through the naive step mapping, with DDIM (their native sampler, 16
// steps), and with their x0 shrunk towards the shard's mean at high noise (a remedy of §11). The samples are scored against the cluster's held-out images by FD-cls (a Frechet
// distance in the features of a classifier trained on MNIST, not FID), precision and recall, and
// the fragment index (connected components of the thresholded image); real training images of the
// cluster, as many, are the floor.
//
// Run after building (`npx turbo run build`): `node apps/coordinator/bench/ddpm-quality.mjs`.
// One JSON object per line on stdout (per seed: the reference, each expert, each score; then a
// summary with the mean and spread over seeds and each variant's FD-cls over the FM expert's);
// progress on stderr; the figure (FD-cls and fragments with their spread, and a grid of samples of
// the first seed per variant) goes to QUALITY_FIGURE.
// Environment:
//   QUALITY_EXPERTS  comma-separated, from ddpm-eps, ddpm-eps-linear (the linear schedule),
//                    ddpm-v, fm (uniform times), fm-logit-normal, ddpm-eps-velocity,
//                    ddpm-eps-min-snr, ddpm-eps-anneal (the learning rate annealed to 0)
//                    (default ddpm-eps,ddpm-v,fm)
//   QUALITY_STEPS    training steps of each expert (default 600)
//   QUALITY_SEEDS    comma-separated seeds: weights, batches and sampling noise (default 0,1,2)
//   QUALITY_SAMPLES  samples per score (default 256)
//   QUALITY_EVAL     held-out images of the cluster (default 256)
//   QUALITY_FIGURE   where the PNG goes (default out/ddpm-quality.png)
import { createRng, subsetImageSet } from '@archipelago/data';
import { deriveSeed, sample, velocityExpert } from '@archipelago/diffusion';
import { scoreImages } from '@archipelago/metrics';
import { buildNetwork, ExpertTrainer, initBackend, loadCheckpoint } from '@archipelago/models';
import * as tf from '@tensorflow/tfjs-core';
import {
  BATCH,
  barFigure,
  CONVERSION,
  ditConfig,
  EMA_DECAY,
  emit,
  LEARNING_RATE,
  loadMnist,
  note,
  RESOLUTION,
  round,
  spread,
} from './lib/quality.mjs';

const STEPS = Number(process.env.QUALITY_STEPS ?? 600);
const SAMPLES = Number(process.env.QUALITY_SAMPLES ?? 256);
const EVAL = Number(process.env.QUALITY_EVAL ?? 256);
const SEEDS = String(process.env.QUALITY_SEEDS ?? '0,1,2')
  .split(',')
  .map(Number);
const FIGURE = process.env.QUALITY_FIGURE ?? 'out/ddpm-quality.png';
for (const [name, v] of Object.entries({ STEPS, SAMPLES, EVAL }))
  if (!(Number.isInteger(v) && v > 0))
    throw new RangeError(`QUALITY_${name} must be a positive integer, got ${v}`);
if (SEEDS.length === 0 || !SEEDS.every(Number.isInteger))
  throw new RangeError(`QUALITY_SEEDS must list integers, got ${process.env.QUALITY_SEEDS}`);
// bench/x0-error.mjs's settings (the demo's workers: batch 32, 2e-3 after warm-up, EMA 0.999,
// from bench/lib/quality.mjs).
const CLUSTER = 0;
const cosine = { kind: 'cosine' };
const ALL_EXPERTS = {
  'ddpm-eps': { name: 'ddpm', schedule: cosine },
  'ddpm-v': { name: 'ddpm', schedule: cosine, prediction: 'v' },
  'ddpm-eps-linear': { name: 'ddpm', schedule: { kind: 'linear' } },
  fm: { name: 'fm', timeSampling: { kind: 'uniform' } },
  /** The demo's FM experts (DEMO_DEFAULTS.fmTimeSampling). */
  'fm-logit-normal': { name: 'fm', timeSampling: { kind: 'logit-normal' } },
  'ddpm-eps-velocity': { name: 'ddpm', schedule: cosine, lossWeighting: { kind: 'velocity' } },
  'ddpm-eps-min-snr': { name: 'ddpm', schedule: cosine, lossWeighting: { kind: 'min-snr' } },
};
/** Trained like the epsilon expert, with the learning rate annealed to 0 (cosine) after warm-up. */
const ANNEALED = { 'ddpm-eps-anneal': 'ddpm-eps' };
/**
 * The shrink remedy of docs/method.md §11: from SHRINK_FROM to t = 1 the expert's x0 is blended
 * linearly towards its shard's mean image (the exact E[x0 | x_1]), all of the way at t = 1.
 */
const SHRINK_FROM = 0.7;
const CHOSEN = String(process.env.QUALITY_EXPERTS ?? 'ddpm-eps,ddpm-v,fm').split(',');
const objectiveOf = (name) => ALL_EXPERTS[name] ?? ALL_EXPERTS[ANNEALED[name]];
for (const name of CHOSEN)
  if (!objectiveOf(name))
    throw new RangeError(
      `QUALITY_EXPERTS: ${name} is not one of ${[...Object.keys(ALL_EXPERTS), ...Object.keys(ANNEALED)].join(', ')}`,
    );
const HEUN = { sampler: 'heun', steps: 16 };
const DDIM = { sampler: 'ddim', steps: 16 };
const METRIC =
  'FD-cls (Frechet distance in the features of an MLP classifier trained on MNIST, not FID)';

const started = performance.now();
await initBackend({ backend: 'wasm' });

// ---- Data: the demo's clustering and cluster 0 (mostly zeros).
const { images, clusters, classifier } = await loadMnist([4]);
const assignments = clusters[4];
const size = RESOLUTION * RESOLUTION;
const cluster = [];
for (let i = 0; i < images.count; i++) if (assignments[i] === CLUSTER) cluster.push(i);
const config = ditConfig(0);
note(
  `ddpm-quality: cluster ${CLUSTER} of MNIST ${RESOLUTION} px (${cluster.length} images), experts ${CHOSEN.join(', ')}, ${STEPS} steps, seeds ${SEEDS.join(',')}`,
);

/** The seed's split of the cluster: held-out images and training images. */
function split(seed) {
  const members = cluster.slice();
  const rng = createRng(deriveSeed(seed, 'quality-split'));
  for (let i = members.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [members[i], members[j]] = [members[j], members[i]];
  }
  return { heldOut: members.slice(0, EVAL), train: members.slice(EVAL) };
}

/** Train one expert on `train` (the same batches for every expert of the seed); its EMA network. */
async function trainExpert(objective, train, seed, anneal = false) {
  const trainer = await ExpertTrainer.create({
    network: { kind: 'dit', config },
    objective,
    optimizer: { learningRate: LEARNING_RATE },
    ema: { decay: EMA_DECAY },
    seed,
  });
  const begun = performance.now();
  const batchRng = createRng(deriveSeed(seed, 'quality-batches'));
  const warmup = Math.max(1, Math.min(100, Math.ceil(STEPS / 10)));
  const x = new Float32Array(BATCH * size);
  let smoothed = 0;
  for (let s = 0; s < STEPS; s++) {
    for (let b = 0; b < BATCH; b++) {
      const r = train[batchRng.int(train.length)];
      for (let p = 0; p < size; p++) x[b * size + p] = images.pixels[r * size + p] / 127.5 - 1;
    }
    const decay =
      anneal && s >= warmup ? 0.5 * (1 + Math.cos((Math.PI * (s - warmup)) / (STEPS - warmup))) : 1;
    trainer.learningRate = LEARNING_RATE * Math.min(1, (s + 1) / warmup) * decay;
    const batch = tf.tensor4d(x, [BATCH, RESOLUTION, RESOLUTION, 1]);
    const { loss } = await trainer.step(batch);
    batch.dispose();
    smoothed = 0.98 * smoothed + 0.02 * loss;
    if ((s + 1) % 200 === 0)
      note(`  step ${s + 1}: loss ${(smoothed / (1 - 0.98 ** (s + 1))).toFixed(4)}`);
  }
  const seconds = (performance.now() - begun) / 1000;
  // The EMA weights, as the checkpoint the coordinator samples holds them.
  const bytes = await trainer.save();
  await trainer.dispose();
  const { params } = loadCheckpoint(bytes, { kind: 'expert' });
  const net = buildNetwork({ kind: 'dit', config }, 0);
  for (const [name, p] of Object.entries(params))
    net.params.get(name).assign(tf.tensor(p.data, p.shape));
  return { net, seconds, loss: smoothed / (1 - 0.98 ** STEPS) };
}

/**
 * `model` with its x0 (`x - t v`) blended towards `mean` (`[H, W, 1]` in [-1, 1]) from SHRINK_FROM
 * to t = 1: weight (1 - t) / (1 - SHRINK_FROM) on the model's x0, the rest on the mean.
 */
const shrinkTowards = (mean) => (model) => (x, t, labels) =>
  tf.tidy(() => {
    const v = model(x, t, labels);
    const tt = tf.reshape(t, [-1, 1, 1, 1]);
    const x0 = tf.sub(x, tf.mul(tt, v));
    const w = tf.clipByValue(tf.div(tf.sub(1, tt), 1 - SHRINK_FROM), 0, 1);
    const blended = tf.add(tf.mul(w, x0), tf.mul(tf.sub(1, w), mean));
    // Back to a velocity: v = (x - x0) / t (t > 0 on every sampler's grid).
    return tf.div(tf.sub(x, blended), tf.maximum(tt, 1e-6));
  });

/** The mean image of `rows` in [-1, 1], `[H, W, 1]`. */
function meanImage(rows) {
  const mean = new Float32Array(size);
  for (const r of rows)
    for (let p = 0; p < size; p++)
      mean[p] += (images.pixels[r * size + p] / 127.5 - 1) / rows.length;
  return tf.tensor3d(mean, [RESOLUTION, RESOLUTION, 1]);
}

/** SAMPLES images of `objective`'s trained `net` with `sampling`, from the noise of `seed`. */
async function draw(net, objective, sampling, seed, conversion = CONVERSION, wrap = (m) => m) {
  const model = wrap(
    velocityExpert({
      objective,
      network: (xIn, tau, labels) => net.apply(xIn, tau, labels),
      conversion,
    }),
  );
  const x0 = sample(model, [SAMPLES, RESOLUTION, RESOLUTION, 1], seed, sampling, {
    x0Clamp: [-1, 1],
  });
  // [-1, 1] -> bytes, as the coordinator writes samples.
  const bytes = tf.tidy(() =>
    tf.cast(tf.round(tf.mul(tf.add(tf.clipByValue(x0, -1, 1), 1), 127.5)), 'int32'),
  );
  const pixels = Uint8Array.from(await bytes.data());
  tf.dispose([x0, bytes]);
  return {
    count: SAMPLES,
    height: RESOLUTION,
    width: RESOLUTION,
    channels: 1,
    pixels,
    labels: new Int32Array(SAMPLES).fill(-1),
    classNames: [],
  };
}

const figures = (s) => ({
  fdCls: round(s.fdCls),
  precision: round(s.precision),
  recall: round(s.recall),
  meanComponents: round(s.fragments.generated.meanComponents),
  fragmented: round(s.fragments.generated.fragmented),
  empty: round(s.fragments.generated.empty),
});

/** What one seed measures: the floor and every variant's scores, by variant name. */
async function runSeed(seed) {
  const { heldOut, train } = split(seed);
  const real = subsetImageSet(images, heldOut);
  const floorRows = train.slice(0, Math.min(SAMPLES, train.length));
  const reference = figures(scoreImages(classifier, real, subsetImageSet(images, floorRows)));
  emit({ kind: 'reference', seed, metric: METRIC, images: floorRows.length, ...reference });
  const variants = {};
  const noise = deriveSeed(seed, 'quality-samples');
  const mean = meanImage(train);
  for (const name of CHOSEN) {
    note(`seed ${seed}: training ${name}`);
    const objective = objectiveOf(name);
    const { net, seconds, loss } = await trainExpert(objective, train, seed, name in ANNEALED);
    emit({ kind: 'expert', seed, name, objective, steps: STEPS, seconds: round(seconds, 1), loss });
    const samplings =
      objective.name === 'ddpm' && !objective.prediction
        ? [
            ['converted, heun 16', HEUN],
            // The naive step mapping instead of SNR matching (docs/method.md §4).
            ['naive conversion, heun 16', HEUN, { ...CONVERSION, mode: 'naive' }],
            ['native, ddim 16', DDIM],
            [
              `converted, shrunk to the mean from t ${SHRINK_FROM}, heun 16`,
              HEUN,
              CONVERSION,
              shrinkTowards(mean),
            ],
          ]
        : [['heun 16', HEUN]];
    for (const [how, sampling, conversion, wrap] of samplings) {
      const samples = await draw(net, objective, sampling, noise, conversion, wrap);
      const variant = `${name} ${how}`;
      variants[variant] = { ...figures(scoreImages(classifier, real, samples)), samples };
      const { samples: _, ...scores } = variants[variant];
      emit({ kind: 'score', seed, variant, metric: METRIC, samples: SAMPLES, ...scores });
    }
    net.dispose();
  }
  mean.dispose();
  return { seed, reference, variants };
}

const runs = [];
for (const seed of SEEDS) runs.push(await runSeed(seed));

// ---- Summary: mean and spread over seeds; FD-cls over the FM expert's, per seed then spread.
const names = Object.keys(runs[0].variants);
const fm = names.find((n) => n.startsWith('fm heun'));
const summary = {
  kind: 'summary',
  metric: METRIC,
  cluster: CLUSTER,
  steps: STEPS,
  samples: SAMPLES,
  seeds: SEEDS,
  reference: {
    fdCls: spread(runs.map((r) => r.reference.fdCls)),
    meanComponents: spread(runs.map((r) => r.reference.meanComponents)),
    fragmented: spread(runs.map((r) => r.reference.fragmented)),
  },
  variants: Object.fromEntries(
    names.map((n) => [
      n,
      {
        fdCls: spread(runs.map((r) => r.variants[n].fdCls)),
        precision: spread(runs.map((r) => r.variants[n].precision)),
        recall: spread(runs.map((r) => r.variants[n].recall)),
        meanComponents: spread(runs.map((r) => r.variants[n].meanComponents)),
        fragmented: spread(runs.map((r) => r.variants[n].fragmented)),
        ...(fm
          ? { fdClsOverFm: spread(runs.map((r) => r.variants[n].fdCls / r.variants[fm].fdCls)) }
          : {}),
      },
    ]),
  ),
  seconds: round((performance.now() - started) / 1000, 1),
};
emit(summary);

// ---- Figure: FD-cls per variant (mean bar, min-max whisker) beside a grid of 8 x 4 samples of
// the first seed for each variant.
await barFigure({
  file: FIGURE,
  title: `MNIST 16 px, cluster ${CLUSTER}, micro DiT, ${STEPS} steps each, ${SEEDS.length} seeds; ${SAMPLES} samples vs held-out`,
  subtitle:
    'FD-cls (Frechet distance in an MNIST classifier’s features, not FID): bar = mean, whisker = min-max; dashed = real training images',
  floor: summary.reference.fdCls,
  rows: names.map((n) => {
    const s = summary.variants[n];
    return {
      name: n,
      fdCls: s.fdCls,
      color: n.startsWith('fm') ? '#2ca02c' : n.includes('-v ') ? '#1f77b4' : '#d62728',
      lines: [
        `fragmented ${(100 * s.fragmented.mean).toFixed(0)} %${s.fdClsOverFm ? `, ${s.fdClsOverFm.mean.toFixed(2)}x FM` : ''}`,
      ],
      samples: runs[0].variants[n].samples,
    };
  }),
});
note(`ddpm-quality: ${summary.seconds} s; figure ${FIGURE}`);
