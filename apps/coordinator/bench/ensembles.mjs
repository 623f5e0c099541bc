#!/usr/bin/env node
// Ensembles by sample quality (issue 14 point 6; docs/method.md §5 routing, §8 shards; measured
// in §15): three of the paper's comparisons on the built-in MNIST at the demo's scale (16 px,
// the demo's clustering: PCA features, K-means with seed 1), FM experts (uniform t,
// unconditional) on the micro DiT with bench/ddpm-quality.mjs's recipe (batch 32, LR 2e-3 after
// warm-up, EMA 0.999, EMA weights sampled), each ensemble with a router trained as the coordinator
// trains it (services/router-training.ts: its size, batch, learning rate and steps):
//   (a) a monolith (K = 1) against K = 4 and K = 8 semantic experts at equal total training
//       compute: ENS_TOTAL_STEPS expert steps in all (the monolith all of them on every training
//       image, each of K experts TOTAL / K on its cluster); the ensembles routed top-1;
//   (b) semantic clusters against random shards of exactly the same sizes (K = 4, top-1;
//       randomPartition, what the coordinator's `assignment: 'random'` uses);
//   (c) routing top-1, top-2, full and threshold (tau 0.1, the manifest's default) on the K = 4
//       semantic ensemble.
// A seeded split of the whole dataset (ENS_HELD images) is held out of all training, experts and
// routers alike. Every configuration draws ENS_SAMPLES images with the coordinator's default
// sampler (Heun, 16 steps) from the same noise, scored against the held-out images with
// @archipelago/metrics: FD-cls (a Frechet distance in the features of a classifier trained on
// MNIST, not FID), precision, recall, intra-class diversity and the fragment index; as many real
// training images are the floor. Each routing also reports the mean experts evaluated per sample
// and step (combineExperts' stats).
//
// Run after building (`npx turbo run build`): `node apps/coordinator/bench/ensembles.mjs`.
// One JSON object per line on stdout (per seed: the reference, each expert and router trained,
// each configuration's scores; then a summary with the mean, min and max over seeds); progress
// on stderr; the figure (FD-cls per configuration with its spread, beside a grid of the first
// seed's samples) goes to ENS_FIGURE. Smoke (ENS_TOTAL_STEPS=8 ENS_ROUTER_STEPS=1 ENS_SAMPLES=8
// ENS_HELD=32 ENS_SEEDS=3, as test/bench/ensembles.test.ts runs it): 14 s of CPU.
// Environment:
//   ENS_SEEDS          comma-separated seeds: split, weights, batches, sampling noise (default 0,1,2)
//   ENS_TOTAL_STEPS    expert training steps of each ensemble in all (default 1200; a multiple of 8)
//   ENS_SAMPLES        samples per configuration (default 256)
//   ENS_HELD           held-out images (default 1000)
//   ENS_ROUTER_STEPS   router training steps (default 400, the coordinator's routerSteps default)
//   ENS_FIGURE         where the PNG goes (default out/ensembles.png)
import { createRng, randomPartition, subsetImageSet } from '@archipelago/data';
import { deriveSeed, velocityExpert } from '@archipelago/diffusion';
import { scoreImages } from '@archipelago/metrics';
import { buildNetwork, ExpertTrainer, initBackend, loadCheckpoint } from '@archipelago/models';
import * as tf from '@tensorflow/tfjs-core';
import {
  BATCH,
  barFigure,
  ditConfig,
  drawSamples,
  EMA_DECAY,
  emit,
  FIELDS,
  figures,
  LEARNING_RATE,
  loadMnist,
  METRIC,
  note,
  RESOLUTION,
  round,
  splitAll,
  spread,
  trainRouter,
} from './lib/quality.mjs';

const TOTAL = Number(process.env.ENS_TOTAL_STEPS ?? 1200);
const SAMPLES = Number(process.env.ENS_SAMPLES ?? 256);
const HELD = Number(process.env.ENS_HELD ?? 1000);
const ROUTER_STEPS = Number(process.env.ENS_ROUTER_STEPS ?? 400);
const SEEDS = String(process.env.ENS_SEEDS ?? '0,1,2')
  .split(',')
  .map(Number);
const FIGURE = process.env.ENS_FIGURE ?? 'out/ensembles.png';
for (const [name, v] of Object.entries({ TOTAL, SAMPLES, HELD, ROUTER_STEPS }))
  if (!(Number.isInteger(v) && v > 0))
    throw new RangeError(
      `ENS_${name === 'TOTAL' ? 'TOTAL_STEPS' : name} must be a positive integer, got ${v}`,
    );
if (TOTAL % 8 !== 0)
  throw new RangeError(`ENS_TOTAL_STEPS must be a multiple of 8 (K = 8 splits it), got ${TOTAL}`);
if (SEEDS.length === 0 || !SEEDS.every(Number.isInteger))
  throw new RangeError(`ENS_SEEDS must list integers, got ${process.env.ENS_SEEDS}`);
const OBJECTIVE = { name: 'fm', timeSampling: { kind: 'uniform' } };
const HEUN = { sampler: 'heun', steps: 16 };
/** The manifest's threshold default (apps/coordinator/src/services/ensembles.ts). */
const TAU = 0.1;
/** The ensembles trained per seed: K, assignment. */
const ENSEMBLES = [
  { name: 'K=1 monolith', k: 1, assignment: 'semantic' },
  { name: 'K=4 semantic', k: 4, assignment: 'semantic' },
  { name: 'K=8 semantic', k: 8, assignment: 'semantic' },
  { name: 'K=4 random', k: 4, assignment: 'random' },
];
/** The configurations sampled: an ensemble, a routing, and the experiments they belong to. */
const CONFIGS = [
  { name: 'monolith (K=1)', ensemble: 'K=1 monolith', routing: { kind: 'full' }, in: 'a' },
  {
    name: 'K=4 semantic, top-1',
    ensemble: 'K=4 semantic',
    routing: { kind: 'top-k', k: 1 },
    in: 'abc',
  },
  {
    name: 'K=8 semantic, top-1',
    ensemble: 'K=8 semantic',
    routing: { kind: 'top-k', k: 1 },
    in: 'a',
  },
  { name: 'K=4 random, top-1', ensemble: 'K=4 random', routing: { kind: 'top-k', k: 1 }, in: 'b' },
  {
    name: 'K=4 semantic, top-2',
    ensemble: 'K=4 semantic',
    routing: { kind: 'top-k', k: 2 },
    in: 'c',
  },
  { name: 'K=4 semantic, full', ensemble: 'K=4 semantic', routing: { kind: 'full' }, in: 'c' },
  {
    name: `K=4 semantic, threshold ${TAU}`,
    ensemble: 'K=4 semantic',
    routing: { kind: 'threshold', tau: TAU },
    in: 'c',
  },
];

const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;
await initBackend({ backend: 'wasm' });

// ---- Data: the demo's clustering of the whole dataset, for K = 4 and K = 8.
const { images, clusters: semantic, classifier } = await loadMnist([4, 8]);
const size = RESOLUTION * RESOLUTION;
const config = ditConfig(0);
note(
  `ensembles: MNIST ${RESOLUTION} px (${images.count} images, ${HELD} held out), ${TOTAL} expert steps per ensemble, router ${ROUTER_STEPS} steps, ${SAMPLES} samples, seeds ${SEEDS.join(',')}`,
);

/** The seed's split of the whole dataset: held-out images and training images. */
const split = (seed) => splitAll(images.count, HELD, seed, 'ensembles-split');

/**
 * The shard of each training image (`[train.length]`, in [0, k)): the semantic clusters, or a
 * random partition with the semantic shards' sizes (the coordinator's `assignment: 'random'`).
 */
function shardsOf(ensemble, train, seed) {
  if (ensemble.k === 1) return new Int32Array(train.length);
  const clusters = Int32Array.from(train, (i) => semantic[ensemble.k][i]);
  if (ensemble.assignment === 'semantic') return clusters;
  const sizes = new Array(ensemble.k).fill(0);
  for (const c of clusters) sizes[c] += 1;
  return randomPartition(sizes, deriveSeed(seed, 'random-assignment'));
}

/** Train one expert for `steps` on the training images `rows`; its EMA network. */
async function trainExpert(rows, steps, seed, tag) {
  const trainer = await ExpertTrainer.create({
    network: { kind: 'dit', config },
    objective: OBJECTIVE,
    optimizer: { learningRate: LEARNING_RATE },
    ema: { decay: EMA_DECAY },
    seed: deriveSeed(seed, `ensembles-weights-${tag}`),
  });
  const begun = performance.now();
  const batchRng = createRng(deriveSeed(seed, `ensembles-batches-${tag}`));
  const warmup = Math.max(1, Math.min(100, Math.ceil(steps / 10)));
  const x = new Float32Array(BATCH * size);
  let smoothed = 0;
  for (let s = 0; s < steps; s++) {
    for (let b = 0; b < BATCH; b++) {
      const r = rows[batchRng.int(rows.length)];
      for (let p = 0; p < size; p++) x[b * size + p] = images.pixels[r * size + p] / 127.5 - 1;
    }
    trainer.learningRate = LEARNING_RATE * Math.min(1, (s + 1) / warmup);
    const batch = tf.tensor4d(x, [BATCH, RESOLUTION, RESOLUTION, 1]);
    const { loss } = await trainer.step(batch);
    batch.dispose();
    smoothed = 0.98 * smoothed + 0.02 * loss;
  }
  const seconds = (performance.now() - begun) / 1000;
  // The EMA weights, as the checkpoint the coordinator samples holds them.
  const bytes = await trainer.save();
  await trainer.dispose();
  const { params } = loadCheckpoint(bytes, { kind: 'expert' });
  const net = buildNetwork({ kind: 'dit', config }, 0);
  for (const [name, p] of Object.entries(params))
    net.params.get(name).assign(tf.tensor(p.data, p.shape));
  return { net, seconds, loss: smoothed / (1 - 0.98 ** steps) };
}

/** One ensemble of the seed: its experts at equal total compute and its router. */
async function trainEnsemble(ensemble, train, seed) {
  const shards = shardsOf(ensemble, train, seed);
  const steps = TOTAL / ensemble.k;
  const nets = [];
  for (let c = 0; c < ensemble.k; c++) {
    const rows = train.filter((_, i) => shards[i] === c);
    const tag = `${ensemble.name}-${c}`;
    const { net, seconds, loss } = await trainExpert(rows, steps, seed, tag);
    nets.push(net);
    emit({
      kind: 'expert',
      seed,
      ensemble: ensemble.name,
      cluster: c,
      images: rows.length,
      steps,
      seconds: round(seconds, 1),
      loss: round(loss),
    });
    note(
      `seed ${seed}: ${ensemble.name} expert ${c} (${rows.length} images, ${steps} steps) ${seconds.toFixed(0)} s, at ${elapsed()}`,
    );
  }
  // A monolith needs no router (a one-way softmax is 1 whatever it reads; the coordinator stores
  // an untrained one): every row goes to its one expert.
  let router = (xIn) => tf.ones([xIn.shape[0], 1]);
  let fit = null;
  if (ensemble.k > 1) {
    fit = await trainRouter({ images, train, shards, k: ensemble.k, steps: ROUTER_STEPS, seed });
    router = fit.router;
    emit({
      kind: 'router',
      seed,
      ensemble: ensemble.name,
      steps: ROUTER_STEPS,
      loss: round(fit.loss),
    });
  }
  const models = nets.map((net) =>
    velocityExpert({
      objective: OBJECTIVE,
      network: (xIn, tau, labels) => net.apply(xIn, tau, labels),
    }),
  );
  return {
    models,
    router,
    dispose: async () => {
      for (const n of nets) n.dispose();
      await fit?.dispose();
    },
  };
}

/** SAMPLES images of an ensemble under `routing`, from the noise of `seed`, and its stats. */
const draw = (ensemble, routing, seed) =>
  drawSamples({
    models: ensemble.models,
    router: ensemble.router,
    routing,
    sampling: HEUN,
    count: SAMPLES,
    seed,
  });

/** What one seed measures: the floor and every configuration's scores, by name. */
async function runSeed(seed) {
  const { heldOut, train } = split(seed);
  const real = subsetImageSet(images, heldOut);
  const floorRows = train.slice(0, Math.min(SAMPLES, train.length));
  const reference = figures(scoreImages(classifier, real, subsetImageSet(images, floorRows)));
  emit({ kind: 'reference', seed, metric: METRIC, images: floorRows.length, ...reference });
  const configs = {};
  const noise = deriveSeed(seed, 'ensembles-samples');
  for (const ensemble of ENSEMBLES) {
    const trained = await trainEnsemble(ensemble, train, seed);
    for (const c of CONFIGS.filter((c) => c.ensemble === ensemble.name)) {
      const { samples, expertsPerSample } = await draw(trained, c.routing, noise);
      const scores = figures(scoreImages(classifier, real, samples));
      configs[c.name] = { ...scores, expertsPerSample: round(expertsPerSample), samples };
      emit({
        kind: 'score',
        seed,
        config: c.name,
        experiments: c.in,
        ensemble: ensemble.name,
        routing: c.routing,
        metric: METRIC,
        samples: SAMPLES,
        ...scores,
        expertsPerSample: round(expertsPerSample),
      });
      note(
        `seed ${seed}: ${c.name}: FD-cls ${scores.fdCls}, ${expertsPerSample.toFixed(2)} experts per sample, at ${elapsed()}`,
      );
    }
    await trained.dispose();
  }
  return { seed, reference, configs };
}

const runs = [];
for (const seed of SEEDS) runs.push(await runSeed(seed));

// ---- Summary: mean, min and max over seeds.
const fields = [...FIELDS, 'expertsPerSample'];
const summary = {
  kind: 'summary',
  metric: METRIC,
  resolution: RESOLUTION,
  totalSteps: TOTAL,
  routerSteps: ROUTER_STEPS,
  samples: SAMPLES,
  heldOut: HELD,
  sampler: HEUN,
  seeds: SEEDS,
  reference: Object.fromEntries(FIELDS.map((f) => [f, spread(runs.map((r) => r.reference[f]))])),
  configs: Object.fromEntries(
    CONFIGS.map((c) => [
      c.name,
      {
        experiments: c.in,
        routing: c.routing,
        ...Object.fromEntries(
          fields.map((f) => [f, spread(runs.map((r) => r.configs[c.name][f]))]),
        ),
      },
    ]),
  ),
  seconds: round((performance.now() - started) / 1000, 1),
};
emit(summary);

// ---- Figure: FD-cls per configuration (mean bar, min-max whisker; dashed: real training images)
// beside a grid of 8 x 4 samples of the first seed.
const color = (c) =>
  c.ensemble === 'K=1 monolith'
    ? '#7f7f7f'
    : c.ensemble === 'K=4 random'
      ? '#d62728'
      : c.ensemble === 'K=8 semantic'
        ? '#9467bd'
        : '#1f77b4';
await barFigure({
  file: FIGURE,
  title: `MNIST 16 px, FM experts, micro DiT, ${TOTAL} expert steps per ensemble, ${SEEDS.length} seeds; ${SAMPLES} samples (Heun 16) vs ${HELD} held-out`,
  subtitle:
    'FD-cls (Frechet distance in an MNIST classifier’s features, not FID): bar = mean, whisker = min-max; dashed = real training images',
  floor: summary.reference.fdCls,
  rows: CONFIGS.map((c) => {
    const s = summary.configs[c.name];
    return {
      name: c.name,
      fdCls: s.fdCls,
      color: color(c),
      lines: [
        `precision ${s.precision.mean.toFixed(2)}, recall ${s.recall.mean.toFixed(2)}`,
        `${s.expertsPerSample.mean.toFixed(2)} experts per sample; experiment ${c.in.split('').join(', ')}`,
      ],
      samples: runs[0].configs[c.name].samples,
    };
  }),
});
note(`ensembles: ${summary.seconds} s; figure ${FIGURE}`);
