// What the sample-quality benchmarks share (docs/method.md §14-16): the built-in MNIST at the
// demo's scale with the demo's clusterings, a held-out split of the whole dataset, experts and
// routers trained the way workers and the coordinator train them, ensembles sampled the way the
// coordinator samples them, FD-cls scores and their spread over seeds, and a bar figure beside
// sample grids. Used by bench/hetero.mjs and bench/defaults.mjs.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import {
  clusterDataset,
  computeFeatures,
  createRng,
  loadBuiltinDataset,
  renderGrid,
} from '@archipelago/data';
import {
  combineExperts,
  deriveSeed,
  sample,
  velocityExpert,
  withGuidance,
} from '@archipelago/diffusion';
import { loadShippedClassifier } from '@archipelago/metrics';
import {
  buildNetwork,
  ditConfigFromPreset,
  ExpertTrainer,
  loadCheckpoint,
  RouterTrainer,
} from '@archipelago/models';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import {
  classRouterBatch,
  ROUTER_BATCH,
  routerConfigFor,
  routerLearningRate,
} from '../../dist/services/router-training.js';

/** The demo's training settings (DEMO_DEFAULTS, the workers' batch and EMA). */
export const RESOLUTION = 16;
export const BATCH = 32;
export const LEARNING_RATE = 2e-3;
export const EMA_DECAY = 0.999;
/** The experts' label dropout (apps/worker/src/shard-batches.ts LABEL_DROPOUT). */
export const LABEL_DROPOUT = 0.1;
/** The manifest's conversion defaults (services/ensembles.ts DEFAULT_INFERENCE). */
export const CONVERSION = { mode: 'snr', alphaMin: 0.01, x0Clamp: [-1, 1] };
export const METRIC =
  'FD-cls (a Frechet distance in the features of a classifier trained on MNIST, not FID)';
const SIZE = RESOLUTION * RESOLUTION;

export const note = (line) => process.stderr.write(`${line}\n`);
export const emit = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);
export const round = (x, digits = 4) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : null);

/** Mean, min and max of the finite values. */
export function spread(values) {
  const v = values.filter(Number.isFinite);
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  return { mean: round(mean), min: round(Math.min(...v)), max: round(Math.max(...v)) };
}

/** A comma-separated list of integers from the environment. */
export function seedList(name, fallback) {
  const seeds = String(process.env[name] ?? fallback)
    .split(',')
    .map(Number);
  if (seeds.length === 0 || !seeds.every(Number.isInteger))
    throw new RangeError(`${name} must list integers, got ${process.env[name]}`);
  return seeds;
}

/** A positive integer from the environment. */
export function positiveInt(name, fallback) {
  const v = Number(process.env[name] ?? fallback);
  if (!(Number.isInteger(v) && v > 0))
    throw new RangeError(`${name} must be a positive integer, got ${process.env[name]}`);
  return v;
}

/**
 * The dataset at the demo's scale, its clusterings into each of `ks` clusters (the demo's: PCA
 * features, K-means with seed 1) and the shipped metric classifier.
 */
export async function loadMnist(ks) {
  const images = await loadBuiltinDataset('mnist', { resolution: RESOLUTION });
  const features = await computeFeatures(images, { seed: 1 });
  const clusters = {};
  for (const k of ks) {
    const { assignments } = await clusterDataset(features.features, features.n, features.d, {
      k,
      seed: 1,
    });
    clusters[k] = assignments;
  }
  const { classifier } = await loadShippedClassifier('mnist', RESOLUTION);
  return { images, clusters, classifier, numClasses: images.classNames.length };
}

/** The demo's expert network: the micro DiT, 4x4 patches, class-conditional when numClasses > 0. */
export const ditConfig = (numClasses) =>
  ditConfigFromPreset('micro', { imageSize: RESOLUTION, channels: 1, numClasses, patchSize: 4 });

/** A seeded split of all `count` images: `held` held out of all training, the rest training. */
export function splitAll(count, held, seed, tag) {
  const order = Array.from({ length: count }, (_, i) => i);
  const rng = createRng(deriveSeed(seed, tag));
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return { heldOut: order.slice(0, held), train: order.slice(held) };
}

/** Rows `rows` of `images` as a batch in [-1, 1]. */
function fillBatch(images, rows, x) {
  rows.forEach((r, b) => {
    for (let p = 0; p < SIZE; p++) x[b * SIZE + p] = images.pixels[r * SIZE + p] / 127.5 - 1;
  });
}

/**
 * One expert of `objective` trained for `steps` on the training images `rows` (batch 32, 2e-3
 * after a warm-up of a tenth of the steps up to 100, EMA 0.999), the batches drawn from
 * `batchSeed` (experts given the same batch seed and rows see the same images) and the weights
 * from `weightSeed`. Class-conditional when `numClasses` > 0: labels with the workers' dropout to
 * the null class. Its EMA network, as the checkpoint the coordinator samples holds it.
 */
export async function trainExpert({
  images,
  rows,
  steps,
  objective,
  numClasses = 0,
  weightSeed,
  batchSeed,
}) {
  const config = ditConfig(numClasses);
  const trainer = await ExpertTrainer.create({
    network: { kind: 'dit', config },
    objective,
    optimizer: { learningRate: LEARNING_RATE },
    ema: { decay: EMA_DECAY },
    seed: weightSeed,
  });
  const begun = performance.now();
  const rng = createRng(batchSeed);
  const warmup = Math.max(1, Math.min(100, Math.ceil(steps / 10)));
  const x = new Float32Array(BATCH * SIZE);
  const labels = new Int32Array(BATCH);
  const picked = new Array(BATCH);
  let smoothed = 0;
  for (let s = 0; s < steps; s++) {
    for (let b = 0; b < BATCH; b++) {
      picked[b] = rows[rng.int(rows.length)];
      const drop = rng.next() < LABEL_DROPOUT;
      labels[b] = drop ? numClasses : images.labels[picked[b]];
    }
    fillBatch(images, picked, x);
    trainer.learningRate = LEARNING_RATE * Math.min(1, (s + 1) / warmup);
    const batch = tf.tensor4d(x, [BATCH, RESOLUTION, RESOLUTION, 1]);
    const { loss } = await trainer.step(batch, numClasses > 0 ? labels : undefined);
    batch.dispose();
    smoothed = 0.98 * smoothed + 0.02 * loss;
  }
  const seconds = (performance.now() - begun) / 1000;
  const bytes = await trainer.save();
  await trainer.dispose();
  const { params } = loadCheckpoint(bytes, { kind: 'expert' });
  const net = buildNetwork({ kind: 'dit', config }, 0);
  for (const [name, p] of Object.entries(params))
    net.params.get(name).assign(tf.tensor(p.data, p.shape));
  return { net, seconds, loss: smoothed / (1 - 0.98 ** steps) };
}

/** The velocity model of a trained expert, converted as the manifest's defaults convert it. */
export const velocityOf = (net, objective) =>
  velocityExpert({
    objective,
    network: (xIn, tau, labels) => net.apply(xIn, tau, labels),
    ...(objective.name === 'ddpm' ? { conversion: CONVERSION } : {}),
  });

/**
 * The router of a K-shard ensemble, trained as the coordinator trains it
 * (services/router-training.ts: its size, batch, learning rate; a class-conditional run's router
 * reads the class, every image seen with it and with the null class) on the training images
 * `train` whose shards are `shards`. Returns the Router and a dispose.
 */
export async function trainRouter({ images, train, shards, k, steps, seed, numClasses = 0 }) {
  const trainer = await RouterTrainer.create({
    network: { kind: 'router', config: routerConfigFor(RESOLUTION, 1, 4, k, numClasses) },
    optimizer: { learningRate: routerLearningRate(0) },
    seed,
    threads: 1,
  });
  const rng = createRng(deriveSeed(seed, 'router-batches'));
  const x = new Float32Array(ROUTER_BATCH * SIZE);
  const y = new Int32Array(ROUTER_BATCH);
  const c = new Int32Array(ROUTER_BATCH);
  const picked = new Array(ROUTER_BATCH);
  let loss = 0;
  for (let step = 0; step < steps; step++) {
    trainer.learningRate = routerLearningRate(step);
    for (let b = 0; b < ROUTER_BATCH; b++) {
      const i = rng.int(train.length);
      picked[b] = train[i];
      y[b] = shards[i];
      c[b] = images.labels[train[i]];
    }
    fillBatch(images, picked, x);
    let r;
    if (numClasses > 0) {
      const both = classRouterBatch(x, y, c, numClasses);
      r = await trainer.step(
        { data: both.pixels, shape: [2 * ROUTER_BATCH, RESOLUTION, RESOLUTION, 1] },
        both.clusters,
        { labels: both.labels },
      );
    } else r = await trainer.step({ data: x, shape: [ROUTER_BATCH, RESOLUTION, RESOLUTION, 1] }, y);
    loss = 0.95 * loss + 0.05 * r.loss;
  }
  return {
    router: trainer.router(),
    loss: loss / (1 - 0.95 ** steps),
    dispose: () => trainer.dispose(),
  };
}

/**
 * `count` images of the ensemble (`models`, `router`) combined by `routing`, sampled with
 * `sampling` from the noise of `seed`, as LoadedEnsemble samples them: class-conditional when
 * `classes` (one per sample) is given, with classifier-free `guidance` around the combined model;
 * the null class otherwise for a class-conditional ensemble. An ImageSet and the mean experts
 * evaluated per sample and step.
 */
export async function drawSamples({
  models,
  router,
  routing,
  sampling,
  count,
  seed,
  numClasses = 0,
  classes = null,
  guidance = 1,
}) {
  const { model: combined, stats } = combineExperts(models, router, routing);
  let model = combined;
  let labels;
  if (numClasses > 0) {
    labels = tf.tensor1d(classes ?? new Array(count).fill(numClasses), 'int32');
    if (classes !== null && guidance !== 1) model = withGuidance(combined, guidance, numClasses);
  }
  const x0 = sample(model, [count, RESOLUTION, RESOLUTION, 1], seed, sampling, {
    x0Clamp: [-1, 1],
    ...(labels ? { labels } : {}),
  });
  labels?.dispose();
  const bytes = tf.tidy(() =>
    tf.cast(tf.round(tf.mul(tf.add(tf.clipByValue(x0, -1, 1), 1), 127.5)), 'int32'),
  );
  const pixels = Uint8Array.from(await bytes.data());
  tf.dispose([x0, bytes]);
  const evaluated = stats.rowsPerExpert.reduce((a, b) => a + b, 0);
  const rows = stats.calls.reduce((a, c) => a + c.batch, 0);
  return {
    samples: {
      count,
      height: RESOLUTION,
      width: RESOLUTION,
      channels: 1,
      pixels,
      labels: Int32Array.from(classes ?? new Array(count).fill(-1)),
      classNames: classes ? Array.from({ length: numClasses }, (_, i) => String(i)) : [],
    },
    expertsPerSample: rows > 0 ? evaluated / rows : 0,
  };
}

/** The figures a score reports (scoreImages' fields, rounded). */
export const figures = (s) => ({
  fdCls: round(s.fdCls),
  precision: round(s.precision),
  recall: round(s.recall),
  intraClassDiversity: round(s.intraClassDiversity),
  meanComponents: round(s.fragments.generated.meanComponents),
  fragmented: round(s.fragments.generated.fragmented),
  empty: round(s.fragments.generated.empty),
});
export const FIELDS = [
  'fdCls',
  'precision',
  'recall',
  'intraClassDiversity',
  'meanComponents',
  'fragmented',
];

const xml = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');

/**
 * A PNG: one row per configuration, its FD-cls as a bar (mean) with a whisker (min-max over
 * seeds), lines of text beside it, and a grid of 32 samples of the first seed (none where a row has
 * no samples); a dashed line at the floor (real training images).
 * rows: [{ name, fdCls: {mean,min,max}, lines: [string], color, samples: ImageSet }].
 */
export async function barFigure({ file, title, subtitle, rows, floor }) {
  const W = 1000;
  const rowH = 150;
  const left = 300;
  const barW = 260;
  const H = 70 + rowH * rows.length;
  const maxFd = Math.max(...rows.map((r) => r.fdCls.max), floor?.max ?? 0) || 1;
  const fx = (v) => left + (v / maxFd) * barW;
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    '<rect width="100%" height="100%" fill="white"/>',
    `<text x="10" y="22" font-size="14">${xml(title)}</text>`,
    `<text x="10" y="42">${xml(subtitle)}</text>`,
  ];
  rows.forEach((r, i) => {
    const y = 60 + i * rowH;
    svg.push(
      `<text x="10" y="${y + 30}" font-size="13">${xml(r.name)}</text>`,
      `<text x="10" y="${y + 50}" fill="#555">FD-cls ${r.fdCls.mean.toFixed(1)} (${r.fdCls.min.toFixed(1)}-${r.fdCls.max.toFixed(1)})</text>`,
      ...r.lines.map(
        (line, j) => `<text x="10" y="${y + 68 + 18 * j}" fill="#555">${xml(line)}</text>`,
      ),
      `<rect x="${left}" y="${y + 20}" width="${Math.max(0, fx(r.fdCls.mean) - left)}" height="24" fill="${r.color}"/>`,
      `<line x1="${fx(r.fdCls.min)}" x2="${fx(r.fdCls.max)}" y1="${y + 32}" y2="${y + 32}" stroke="#000" stroke-width="2"/>`,
    );
  });
  if (floor)
    svg.push(
      `<line x1="${fx(floor.mean)}" x2="${fx(floor.mean)}" y1="60" y2="${H - 10}" stroke="#777" stroke-dasharray="4 4"/>`,
    );
  svg.push('</svg>');
  const composites = [];
  for (const [i, r] of rows.entries()) {
    if (!r.samples) continue;
    const shown = Math.min(32, r.samples.count);
    const gridRows = Array.from({ length: Math.ceil(shown / 8) }, (_, g) =>
      Array.from({ length: 8 }, (_, col) => g * 8 + col).filter((j) => j < shown),
    );
    const grid = await renderGrid(r.samples, gridRows, { scale: 2 });
    composites.push({ input: grid, left: left + barW + 40, top: 60 + i * rowH });
  }
  await mkdir(path.dirname(file), { recursive: true });
  await sharp(Buffer.from(svg.join('\n')))
    .composite(composites)
    .png()
    .toFile(file);
}
