#!/usr/bin/env node
// Class-conditional routing (docs/method.md §5, issue 14 point 3): is the product rule
// p(k | x_t, c) ∝ p(k | x_t) p(c | k) as good as a router trained with the class? On the built-in
// MNIST at the demo's scale (16 px, the demo's clustering: PCA features, K = 4, seed 1), three
// routers of the coordinator's router size are trained with the same batches, seed and steps:
//   - `unconditional`: the router every run had, p(k | x_t); class-conditional requests multiply in
//     p(c | k) from the training set's class counts (the product rule, in log space);
//   - `dropout`: a router that also reads the class, trained with label dropout as the experts
//     are (10 % of the rows get the null class), so it answers p(k | x_t, c) and, for the null
//     class, p(k | x_t);
//   - `paired`: the same network trained on every image twice, with its class and with the null
//     class (services/router-training.ts classRouterBatch, what the coordinator does): twice the
//     rows per step.
// All are scored on held-out images (each noised ROUTING_REPEATS times, t ~ U(0, 1)) by the
// cross-entropy of the true cluster (the proper score of a posterior: lower is better, log K is a
// uniform guess) and by accuracy, per t bin, with the class (product rule against the class
// routers) and without it (the unconditional router against the class routers' null class).
//
// Run after building (`npx turbo run build`): `node apps/coordinator/bench/class-routing.mjs`.
// One JSON object per line on stdout (one per seed, method and bin; a summary with the mean and
// spread over seeds); progress on stderr; the figure goes to ROUTING_FIGURE.
// Environment:
//   ROUTING_STEPS    router training steps (default 400, the coordinator's routerSteps default)
//   ROUTING_SEEDS    comma-separated seeds (default 0,1,2)
//   ROUTING_HELD     held-out images (default 1000)
//   ROUTING_REPEATS  noise draws per held-out image (default 4)
//   ROUTING_FIGURE   where the PNG goes (default out/class-routing.png)
//   ROUTING_SUMMARY  draw the figure from an earlier run's JSON lines instead of measuring
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { clusterDataset, computeFeatures, createRng, loadBuiltinDataset } from '@archipelago/data';
import { createObjective, deriveSeed } from '@archipelago/diffusion';
import { initBackend, RouterTrainer } from '@archipelago/models';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import {
  classRouterBatch,
  ROUTER_BATCH,
  routerConfigFor,
  routerLearningRate,
} from '../dist/services/router-training.js';

const STEPS = Number(process.env.ROUTING_STEPS ?? 400);
const SEEDS = String(process.env.ROUTING_SEEDS ?? '0,1,2')
  .split(',')
  .map(Number);
const HELD = Number(process.env.ROUTING_HELD ?? 1000);
const REPEATS = Number(process.env.ROUTING_REPEATS ?? 4);
const FIGURE = process.env.ROUTING_FIGURE ?? 'out/class-routing.png';
for (const [name, v] of Object.entries({ STEPS, HELD, REPEATS }))
  if (!(Number.isInteger(v) && v > 0))
    throw new RangeError(`ROUTING_${name} must be a positive integer, got ${v}`);
if (SEEDS.length === 0 || !SEEDS.every(Number.isInteger))
  throw new RangeError(`ROUTING_SEEDS must list integers, got ${process.env.ROUTING_SEEDS}`);
const RESOLUTION = 16;
const K = 4;
const BINS = 10;
const EVAL_SEED = 777;
/** The experts' label dropout (apps/worker/src/shard-batches.ts LABEL_DROPOUT). */
const LABEL_DROPOUT = 0.1;
const note = (line) => process.stderr.write(`${line}\n`);
const emit = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);
const round = (x, digits = 4) => Number(x.toFixed(digits));
const started = performance.now();
// ROUTING_SUMMARY=file: draw the figure again from the summary line an earlier run wrote.
if (process.env.ROUTING_SUMMARY) {
  const lines = (await readFile(process.env.ROUTING_SUMMARY, 'utf8')).trim().split('\n');
  const summary = lines.map((l) => JSON.parse(l)).find((r) => r.bench === 'class-routing.summary');
  if (!summary)
    throw new Error(`${process.env.ROUTING_SUMMARY} holds no class-routing.summary line`);
  await drawFigure(summary);
  note(`class-routing: figure ${FIGURE}`);
  process.exit(0);
}
await initBackend({ backend: 'wasm' });

// ---- Data: the demo's clustering, a held-out split, p(c | k) from the training part.
const images = await loadBuiltinDataset('mnist', { resolution: RESOLUTION });
const C = images.classNames.length;
const features = await computeFeatures(images, { seed: 1 });
const { assignments } = await clusterDataset(features.features, features.n, features.d, {
  k: K,
  seed: 1,
});
const size = RESOLUTION * RESOLUTION;
const order = Array.from({ length: images.count }, (_, i) => i);
{
  const rng = createRng(deriveSeed(1, 'routing-split'));
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
}
const held = order.slice(0, HELD);
const train = order.slice(HELD);
const classCounts = Array.from({ length: K }, () => new Array(C).fill(0));
for (const i of train) classCounts[assignments[i]][images.labels[i]] += 1;
const logPrior = classCounts.map((row) => {
  const n = row.reduce((a, b) => a + b, 0);
  return row.map((c) => (c > 0 ? Math.log(c / n) : Number.NEGATIVE_INFINITY));
});
note(
  `class-routing: ${images.count} MNIST images at ${RESOLUTION} px, K = ${K}, ${train.length} train, ${held.length} held out; ${STEPS} steps, seeds ${SEEDS.join(',')}`,
);

const pixelsOf = (rows) => {
  const out = new Float32Array(rows.length * size);
  rows.forEach((r, i) => {
    for (let p = 0; p < size; p++) out[i * size + p] = images.pixels[r * size + p] / 127.5 - 1;
  });
  return out;
};
const heldX = pixelsOf(held);

/** The three routers for one seed, trained on the same batches. */
async function trainRouters(seed) {
  const base = routerConfigFor(RESOLUTION, 1, 4, K);
  const make = (config) =>
    RouterTrainer.create({
      network: { kind: 'router', config },
      optimizer: { learningRate: routerLearningRate(0) },
      seed,
      threads: 1,
    });
  const plain = await make(base);
  const withClass = await make({ ...base, numClasses: C });
  const paired = await make({ ...base, numClasses: C });
  const batchRng = createRng(deriveSeed(seed, 'router-batches'));
  const dropRng = createRng(deriveSeed(seed, 'router-label-dropout'));
  for (let step = 0; step < STEPS; step++) {
    const rows = Array.from({ length: ROUTER_BATCH }, () => train[batchRng.int(train.length)]);
    const x = { data: pixelsOf(rows), shape: [ROUTER_BATCH, RESOLUTION, RESOLUTION, 1] };
    const clusters = Int32Array.from(rows, (r) => assignments[r]);
    const classes = Int32Array.from(rows, (r) => images.labels[r]);
    const dropped = classes.map((c) => (dropRng.next() < LABEL_DROPOUT ? C : c));
    for (const t of [plain, withClass, paired]) t.learningRate = routerLearningRate(step);
    await plain.step(x, clusters);
    await withClass.step(x, clusters, { labels: dropped });
    const both = classRouterBatch(x.data, clusters, classes, C);
    await paired.step(
      { data: both.pixels, shape: [2 * ROUTER_BATCH, RESOLUTION, RESOLUTION, 1] },
      both.clusters,
      { labels: both.labels },
    );
    if ((step + 1) % 100 === 0) note(`seed ${seed}: step ${step + 1}/${STEPS}`);
  }
  return { plain, withClass, paired };
}

/** Per bin: mean cross-entropy of the true cluster and accuracy, for each way of routing. */
function score(plain, withClass, paired, seed) {
  const path = createObjective({ name: 'fm', timeSampling: { kind: 'uniform' } });
  const methods = [
    'product rule',
    'dropout, class',
    'paired, class',
    'unconditional',
    'dropout, null class',
    'paired, null class',
  ];
  const sums = Object.fromEntries(
    methods.map((m) => [m, { nll: new Array(BINS).fill(0), correct: new Array(BINS).fill(0) }]),
  );
  const counts = new Array(BINS).fill(0);
  const plainRouter = plain.router();
  const classRouter = withClass.router();
  const pairedRouter = paired.router();
  for (let r = 0; r < REPEATS; r++) {
    const out = tf.tidy(() => {
      const x0 = tf.tensor4d(heldX, [held.length, RESOLUTION, RESOLUTION, 1]);
      const { xt, tau, target } = path.sampleTraining(x0, deriveSeed(EVAL_SEED, seed, r));
      target.dispose();
      const t = tf.div(tau, 999);
      const labels = tf.tensor1d(
        Int32Array.from(held, (i) => images.labels[i]),
        'int32',
      );
      const nulls = tf.fill([held.length], C, 'int32');
      const logP = tf.log(plainRouter(xt, t));
      const prior = tf.tensor2d(
        held.flatMap((i) => logPrior.map((row) => row[images.labels[i]])),
        [held.length, K],
      );
      return {
        t: t.dataSync(),
        'product rule': tf.logSoftmax(tf.add(logP, prior)).dataSync(),
        'dropout, class': tf.log(classRouter(xt, t, labels)).dataSync(),
        'paired, class': tf.log(pairedRouter(xt, t, labels)).dataSync(),
        unconditional: logP.dataSync(),
        'dropout, null class': tf.log(classRouter(xt, t, nulls)).dataSync(),
        'paired, null class': tf.log(pairedRouter(xt, t, nulls)).dataSync(),
      };
    });
    for (let n = 0; n < held.length; n++) {
      const b = Math.min(BINS - 1, Math.floor(out.t[n] * BINS));
      const k = assignments[held[n]];
      counts[b] += 1;
      for (const m of methods) {
        const row = out[m].subarray(n * K, (n + 1) * K);
        sums[m].nll[b] -= Math.max(row[k], -50); // a zero probability counts as e^-50
        let best = 0;
        for (let j = 1; j < K; j++) if (row[j] > row[best]) best = j;
        if (best === k) sums[m].correct[b] += 1;
      }
    }
  }
  return Object.fromEntries(
    methods.map((m) => [
      m,
      {
        nll: sums[m].nll.map((v, b) => v / counts[b]),
        accuracy: sums[m].correct.map((v, b) => v / counts[b]),
        meanNll: sums[m].nll.reduce((a, b) => a + b, 0) / counts.reduce((a, b) => a + b, 0),
      },
    ]),
  );
}

const perSeed = [];
for (const seed of SEEDS) {
  const { plain, withClass, paired } = await trainRouters(seed);
  const result = score(plain, withClass, paired, seed);
  for (const r of [plain, withClass, paired]) await r.dispose();
  perSeed.push(result);
  for (const [method, r] of Object.entries(result)) {
    emit({
      bench: 'class-routing',
      seed,
      method,
      meanNll: round(r.meanNll),
      nll: r.nll.map((v) => round(v)),
      accuracy: r.accuracy.map((v) => round(v)),
    });
  }
}

const methods = Object.keys(perSeed[0]);
const stat = (values) => {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return { mean: round(mean), min: round(Math.min(...values)), max: round(Math.max(...values)) };
};
const summary = {
  bench: 'class-routing.summary',
  steps: STEPS,
  seeds: SEEDS,
  heldOut: held.length,
  repeats: REPEATS,
  uniformNll: round(Math.log(K)),
  edges: Array.from({ length: BINS + 1 }, (_, i) => i / BINS),
  methods: Object.fromEntries(
    methods.map((m) => [
      m,
      {
        meanNll: stat(perSeed.map((s) => s[m].meanNll)),
        nll: Array.from({ length: BINS }, (_, b) => stat(perSeed.map((s) => s[m].nll[b]))),
        accuracy: Array.from({ length: BINS }, (_, b) =>
          stat(perSeed.map((s) => s[m].accuracy[b])),
        ),
      },
    ]),
  ),
  seconds: round((performance.now() - started) / 1000, 1),
};
emit(summary);
await drawFigure(summary);
note(`class-routing: ${summary.seconds} s; figure ${FIGURE}`);

// ---- The figure: cross-entropy of the true cluster against t, mean over seeds with the min-max band.
async function drawFigure(summary) {
  const W = 760;
  const H = 420;
  const box = { left: 60, right: 230, top: 40, bottom: 50 };
  const colours = {
    'product rule': '#d62728',
    'dropout, class': '#2ca02c',
    'paired, class': '#1f77b4',
    unconditional: '#ff9896',
    'dropout, null class': '#98df8a',
    'paired, null class': '#aec7e8',
  };
  const dashed = (m) =>
    m.includes('null') || m === 'unconditional' ? ' stroke-dasharray="6 3"' : '';
  const methods = Object.keys(summary.methods);
  const top =
    1.05 *
    Math.max(Math.log(K), ...methods.flatMap((m) => summary.methods[m].nll.map((s) => s.max)));
  const px = (b) => box.left + ((b + 0.5) / BINS) * (W - box.left - box.right);
  const py = (v) => box.top + (1 - v / top) * (H - box.top - box.bottom);
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    '<rect width="100%" height="100%" fill="white"/>',
    `<text x="${box.left}" y="22" font-size="14">Routing: cross-entropy of the true cluster (MNIST 16 px, K = ${K}, ${summary.seeds.length} seeds)</text>`,
    `<rect x="${box.left}" y="${box.top}" width="${W - box.left - box.right}" height="${H - box.top - box.bottom}" fill="none" stroke="#333"/>`,
  ];
  for (let v = 0; v <= top; v += 0.25) {
    svg.push(
      `<line x1="${box.left}" x2="${W - box.right}" y1="${py(v)}" y2="${py(v)}" stroke="#eee"/>`,
      `<text x="${box.left - 6}" y="${py(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`,
    );
  }
  for (let b = 0; b < BINS; b += 2)
    svg.push(
      `<text x="${px(b)}" y="${H - box.bottom + 16}" text-anchor="middle">${((b + 0.5) / BINS).toFixed(2)}</text>`,
    );
  svg.push(
    `<text x="${(box.left + W - box.right) / 2}" y="${H - 12}" text-anchor="middle">FM time t (noise level)</text>`,
    `<line x1="${box.left}" x2="${W - box.right}" y1="${py(Math.log(K))}" y2="${py(Math.log(K))}" stroke="#999" stroke-dasharray="4 4"/>`,
    `<text x="${W - box.right + 6}" y="${py(Math.log(K)) + 4}" fill="#777">log K (uniform)</text>`,
  );
  methods.forEach((m, i) => {
    const s = summary.methods[m].nll;
    const band = [
      ...s.map((v, b) => `${px(b).toFixed(1)},${py(v.max).toFixed(1)}`),
      ...s.map((v, b) => `${px(b).toFixed(1)},${py(v.min).toFixed(1)}`).reverse(),
    ];
    svg.push(
      `<polygon points="${band.join(' ')}" fill="${colours[m]}" opacity="0.2"/>`,
      `<polyline points="${s.map((v, b) => `${px(b).toFixed(1)},${py(v.mean).toFixed(1)}`).join(' ')}" fill="none" stroke="${colours[m]}" stroke-width="2"${dashed(m)}/>`,
      `<line x1="${W - box.right + 10}" x2="${W - box.right + 30}" y1="${box.top + 50 + 20 * i}" y2="${box.top + 50 + 20 * i}" stroke="${colours[m]}" stroke-width="3"${dashed(m)}/>`,
      `<text x="${W - box.right + 36}" y="${box.top + 54 + 20 * i}">${m}</text>`,
    );
  });
  svg.push('</svg>');
  await mkdir(path.dirname(FIGURE), { recursive: true });
  await sharp(Buffer.from(svg.join('\n')))
    .png()
    .toFile(FIGURE);
}
