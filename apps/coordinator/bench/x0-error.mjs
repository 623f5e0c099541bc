#!/usr/bin/env node
// x0 error per noise level of a DDPM (epsilon) expert, the same expert converted to velocity, a
// v-prediction expert and an FM expert, all trained on one cluster of the built-in MNIST at the
// demo's scale with the same architecture, steps, batches and seed, against the trivial
// predictor "x0 = the cluster's mean image" (docs/method.md §11, §13).
//
// Run after building (`npx turbo run build`): `node apps/coordinator/bench/x0-error.mjs`.
// One JSON object per line on stdout (one per expert trained, one per noise level, a summary);
// progress on stderr; the figure goes to X0_FIGURE (default out/x0-error.png).
// Environment:
//   X0_STEPS    training steps per expert (default 600: the three fit in ~10 minutes on 2 cores;
//               the demo trains 1,000)
//   X0_CLUSTER  which of the K = 4 clusters (default 0; the demo's clustering, seed 1)
//   X0_EVAL     held-out images scored per noise level (default 256)
//   X0_EXPERTS  which experts (default ddpm-eps,ddpm-v,fm; also ddpm-eps-velocity, ddpm-eps-min-snr,
//               the epsilon loss weightings of docs/method.md §11)
//   X0_SEED     seed of the weights, batches, noise and times (default 0)
//   X0_FIGURE   where the PNG goes
//   X0_REPLOT   comma list of earlier runs' stdout files: no training, redraw their levels in one figure
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { clusterDataset, computeFeatures, createRng, loadBuiltinDataset } from '@archipelago/data';
import {
  createDdpmSchedule,
  deriveSeed,
  epsToVelocity,
  fmLogSnr,
  fmVpScale,
  velocityExpert,
} from '@archipelago/diffusion';
import {
  buildNetwork,
  ditConfigFromPreset,
  ExpertTrainer,
  initBackend,
  loadCheckpoint,
} from '@archipelago/models';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';

const STEPS = Number(process.env.X0_STEPS ?? 600);
const CLUSTER = Number(process.env.X0_CLUSTER ?? 0);
const EVAL = Number(process.env.X0_EVAL ?? 256);
const SEED = Number(process.env.X0_SEED ?? 0);
const FIGURE = process.env.X0_FIGURE ?? 'out/x0-error.png';
// The demo's training settings (apps/coordinator/src/demo.ts DEMO_DEFAULTS, the worker's EMA and
// warm-up), unconditional: the measurement is about the objective, not guidance.
const RESOLUTION = 16;
const BATCH = 32;
const LEARNING_RATE = 2e-3;
const EMA_DECAY = 0.999;
const LEVELS = Array.from({ length: 20 }, (_, i) => (i + 1) / 20); // FM t = 0.05 ... 1
const note = (line) => process.stderr.write(`${line}\n`);
const emit = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);

// X0_REPLOT: redraw the figure from the level records of earlier runs (JSON lines), merged.
const REPLOT = process.env.X0_REPLOT;
let levels;
let names;
let steps = STEPS;
if (REPLOT) {
  const byT = new Map();
  for (const file of REPLOT.split(',')) {
    const records = (await readFile(file, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    for (const r of records) {
      if (r.kind === 'expert') steps = r.steps;
      if (r.kind !== 'level') continue;
      const merged = byT.get(r.t) ?? { ...r, mse: {} };
      Object.assign(merged.mse, r.mse);
      byT.set(r.t, merged);
    }
  }
  levels = [...byT.values()].sort((a, b) => a.t - b.t);
  names = Object.keys(levels[0].mse).sort(
    (a, b) => (a === 'cluster mean') - (b === 'cluster mean'),
  );
} else {
  const started = performance.now();
  await initBackend({ backend: 'wasm' });

  // ---- Data: the demo's clustering (PCA features, K = 4, seed 1), one cluster, a held-out split.
  const images = await loadBuiltinDataset('mnist', { resolution: RESOLUTION });
  const features = await computeFeatures(images, { seed: 1 });
  const clusters = await clusterDataset(features.features, features.n, features.d, {
    k: 4,
    seed: 1,
  });
  const size = RESOLUTION * RESOLUTION;
  const members = [];
  for (let i = 0; i < images.count; i++) if (clusters.assignments[i] === CLUSTER) members.push(i);
  const rng = createRng(deriveSeed(SEED, 'split'));
  for (let i = members.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [members[i], members[j]] = [members[j], members[i]];
  }
  const heldOut = members.slice(0, EVAL);
  const train = members.slice(EVAL);
  const toFloat = (rows) => {
    const out = new Float32Array(rows.length * size);
    rows.forEach((r, i) => {
      for (let p = 0; p < size; p++) out[i * size + p] = images.pixels[r * size + p] / 127.5 - 1;
    });
    return out;
  };
  const trainX = toFloat(train);
  const evalX = toFloat(heldOut);
  const mean = new Float32Array(size);
  for (let i = 0; i < train.length; i++)
    for (let p = 0; p < size; p++) mean[p] += trainX[i * size + p] / train.length;
  const digits = new Array(10).fill(0);
  for (const r of members) digits[images.labels[r]] += 1;
  note(`cluster ${CLUSTER}: ${members.length} images (${train.length} train, ${EVAL} held out)`);

  // ---- Training: the same network, steps, batches (indices drawn from one seed) and weight seed.
  const config = ditConfigFromPreset('micro', {
    imageSize: RESOLUTION,
    channels: 1,
    numClasses: 0,
    patchSize: 4,
  });
  const cosine = { kind: 'cosine' };
  const ALL_EXPERTS = [
    { name: 'ddpm-eps', objective: { name: 'ddpm', schedule: cosine } },
    { name: 'ddpm-v', objective: { name: 'ddpm', schedule: cosine, prediction: 'v' } },
    { name: 'fm', objective: { name: 'fm', timeSampling: { kind: 'logit-normal' } } },
    {
      name: 'ddpm-eps-velocity',
      objective: { name: 'ddpm', schedule: cosine, lossWeighting: { kind: 'velocity' } },
    },
    {
      name: 'ddpm-eps-min-snr',
      objective: { name: 'ddpm', schedule: cosine, lossWeighting: { kind: 'min-snr' } },
    },
  ];
  const chosen = (process.env.X0_EXPERTS ?? 'ddpm-eps,ddpm-v,fm').split(',');
  const EXPERTS = ALL_EXPERTS.filter((e) => chosen.includes(e.name));
  if (EXPERTS.length !== chosen.length)
    throw new Error(`X0_EXPERTS: valid names are ${ALL_EXPERTS.map((e) => e.name).join(', ')}`);
  const batchRng = createRng(deriveSeed(SEED, 'batches'));
  const batchRows = Array.from({ length: STEPS }, () =>
    Array.from({ length: BATCH }, () => batchRng.int(train.length)),
  );
  const warmup = Math.max(1, Math.min(100, Math.ceil(STEPS / 10)));

  async function trainExpert(objective) {
    const trainer = await ExpertTrainer.create({
      network: { kind: 'dit', config },
      objective,
      optimizer: { learningRate: LEARNING_RATE },
      ema: { decay: EMA_DECAY },
      seed: SEED,
    });
    const begun = performance.now();
    const x = new Float32Array(BATCH * size);
    let last = 0;
    for (let s = 0; s < STEPS; s++) {
      batchRows[s].forEach((r, i) => {
        x.set(trainX.subarray(r * size, (r + 1) * size), i * size);
      });
      trainer.learningRate = LEARNING_RATE * Math.min(1, (s + 1) / warmup);
      const batch = tf.tensor4d(x, [BATCH, RESOLUTION, RESOLUTION, 1]);
      const result = await trainer.step(batch);
      batch.dispose();
      last = 0.98 * last + 0.02 * result.loss;
      if ((s + 1) % 200 === 0)
        note(`  step ${s + 1}: loss ${(last / (1 - 0.98 ** (s + 1))).toFixed(4)}`);
    }
    const seconds = (performance.now() - begun) / 1000;
    // The EMA weights, as a checkpoint holds them: what the coordinator samples with.
    const bytes = await trainer.save();
    await trainer.dispose();
    const { params } = loadCheckpoint(bytes, { kind: 'expert' });
    const net = buildNetwork({ kind: 'dit', config }, 0);
    for (const [name, p] of Object.entries(params))
      net.params.get(name).assign(tf.tensor(p.data, p.shape));
    return { net, seconds, loss: last / (1 - 0.98 ** STEPS) };
  }

  const nets = {};
  for (const e of EXPERTS) {
    note(`training ${e.name} for ${STEPS} steps`);
    const { net, seconds, loss } = await trainExpert(e.objective);
    nets[e.name] = (xIn, tau, labels) => net.apply(xIn, tau, labels);
    emit({ kind: 'expert', name: e.name, objective: e.objective, steps: STEPS, seconds, loss });
  }

  // ---- Predictors of x0 at the FM state (x_t, t) = ((1 - t) x0 + t e, t): [B, 16, 16, 1].
  const schedule = createDdpmSchedule(cosine);
  const huge = [-1e6, 1e6];
  const viaVelocity = (model) => (x, t) => tf.sub(x, tf.mul(model(x, tf.fill([x.shape[0]], t)), t)); // x0 = x_t - t v
  const predictors = {};
  for (const e of EXPERTS) {
    if (e.name === 'fm' || e.name === 'ddpm-v') {
      // x0 implied by the velocity (v-prediction needs no floor or clamp, docs/method.md §10).
      predictors[e.name === 'fm' ? 'fm' : 'ddpm-v converted'] = viaVelocity(
        velocityExpert({ objective: e.objective, network: nets[e.name] }),
      );
      continue;
    }
    const net = nets[e.name];
    if (e.name === 'ddpm-eps') {
      // Native: eps at the SNR-matched step n*, x0 = (x_vp - s eps) / a on the VP path.
      predictors[`${e.name} native`] = (x, t) => {
        const n = schedule.stepForLogSnr(fmLogSnr(t));
        const abar = schedule.alphaBar(n);
        const xVp = tf.div(x, fmVpScale(t));
        const eps = net(xVp, tf.fill([x.shape[0]], n));
        return tf.div(tf.sub(xVp, tf.mul(eps, Math.sqrt(1 - abar))), Math.sqrt(abar));
      };
    }
    // Converted to velocity and back: the path sampling uses (alphaMin 0.01), without a clamp ...
    predictors[`${e.name} converted`] = viaVelocity(
      epsToVelocity(net, schedule, { mode: 'snr', x0Clamp: huge }),
    );
    // ... with the manifest's default clamp (x0 in [-1, 1]) ...
    predictors[`${e.name} converted, clamp 1`] = viaVelocity(
      epsToVelocity(net, schedule, { mode: 'snr', x0Clamp: [-1, 1] }),
    );
    // ... and with the naive step mapping instead of SNR matching.
    if (e.name === 'ddpm-eps')
      predictors[`${e.name} naive`] = viaVelocity(
        epsToVelocity(net, schedule, { mode: 'naive', x0Clamp: huge }),
      );
  }
  predictors['cluster mean'] = (x) =>
    tf.tile(tf.tensor4d(mean, [1, RESOLUTION, RESOLUTION, 1]), [x.shape[0], 1, 1, 1]);
  names = Object.keys(predictors);

  const x0 = tf.tensor4d(evalX, [EVAL, RESOLUTION, RESOLUTION, 1]);
  levels = [];
  LEVELS.forEach((t, i) => {
    const mse = tf.tidy(() => {
      const e = tf.randomNormal(x0.shape, 0, 1, 'float32', deriveSeed(SEED, 1000 + i));
      const xt = tf.add(tf.mul(x0, 1 - t), tf.mul(e, t));
      return Object.fromEntries(
        names.map((name) => {
          const pred = predictors[name](xt, t);
          return [name, tf.mean(tf.square(tf.sub(pred, x0))).dataSync()[0]];
        }),
      );
    });
    const record = { kind: 'level', t, logSnr: t === 1 ? null : fmLogSnr(t), mse };
    levels.push(record);
    emit(record);
  });

  // ---- Summary: where each is worse than the FM expert and than the cluster mean, and by how much.
  const ratio = (name, base) => levels.map((l) => l.mse[name] / l.mse[base]);
  const summary = { kind: 'summary', cluster: CLUSTER, digits, train: train.length, heldOut: EVAL };
  for (const name of names) {
    if (name === 'fm') continue;
    const vsFm = predictors.fm ? ratio(name, 'fm') : LEVELS.map(() => Number.NaN);
    const vsMean = ratio(name, 'cluster mean');
    summary[name] = {
      meanOverLevels: levels.reduce((a, l) => a + l.mse[name], 0) / levels.length,
      worstVsFm: Math.max(...vsFm),
      worstVsFmAt: LEVELS[vsFm.indexOf(Math.max(...vsFm))],
      worseThanFmAt: LEVELS.filter((_, i) => vsFm[i] > 1),
      worseThanMeanAt: LEVELS.filter((_, i) => vsMean[i] > 1),
    };
  }
  summary.seconds = (performance.now() - started) / 1000;
  if (predictors.fm)
    summary.fm = { meanOverLevels: levels.reduce((a, l) => a + l.mse.fm, 0) / levels.length };
  emit(summary);
}

// ---- Figure: two panels against t, log scale, one line each: the x0 MSE, and the MSE over the FM
// expert's (where there is one). An SVG rendered by sharp.
const W = 860;
const PANEL = 400;
const box = { left: 70, right: 330, top: 30, bottom: 50 };
const colours = [
  '#d62728',
  '#ff7f0e',
  '#bcbd22',
  '#8c564b',
  '#9467bd',
  '#1f77b4',
  '#17becf',
  '#e377c2',
  '#2ca02c',
  '#393b79',
];
const px = (t) => box.left + ((t - 0.05) / 0.95) * (W - box.left - box.right);
const colourOf = (name, k) => (name === 'cluster mean' ? '#7f7f7f' : colours[k % colours.length]);
const dashOf = (name) => (name === 'cluster mean' ? ' stroke-dasharray="6 4"' : '');

/** One panel at vertical offset `top`: `value(level, name)` against t, log scale capped at `cap`. */
function panel(top, title, value, cap) {
  const out = [];
  const all = levels.flatMap((l) => names.map((n) => value(l, n))).filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...all)));
  const hi = Math.ceil(Math.log10(Math.min(Math.max(...all), cap)));
  const height = PANEL - box.top - box.bottom;
  const py = (v) =>
    top +
    box.top +
    ((hi - Math.log10(Math.min(Math.max(v, 10 ** lo), 10 ** hi))) / (hi - lo)) * height;
  out.push(`<text x="${box.left}" y="${top + 18}" font-size="14">${title}</text>`);
  for (let d = lo; d <= hi; d++) {
    out.push(
      `<line x1="${box.left}" x2="${W - box.right}" y1="${py(10 ** d)}" y2="${py(10 ** d)}" stroke="#ddd"/>`,
      `<text x="${box.left - 8}" y="${py(10 ** d) + 4}" text-anchor="end">1e${d}</text>`,
    );
  }
  for (const t of [0.05, 0.25, 0.5, 0.75, 1]) {
    out.push(
      `<text x="${px(t)}" y="${top + PANEL - box.bottom + 18}" text-anchor="middle">${t}</text>`,
    );
  }
  out.push(
    `<text x="${(box.left + W - box.right) / 2}" y="${top + PANEL - 12}" text-anchor="middle">FM time t (noise level)</text>`,
    `<rect x="${box.left}" y="${top + box.top}" width="${W - box.left - box.right}" height="${height}" fill="none" stroke="#333"/>`,
  );
  names.forEach((name, k) => {
    if (!(value(levels[0], name) > 0)) return;
    const points = levels.map((l) => `${px(l.t).toFixed(1)},${py(value(l, name)).toFixed(1)}`);
    out.push(
      `<polyline points="${points.join(' ')}" fill="none" stroke="${colourOf(name, k)}" stroke-width="2"${dashOf(name)}/>`,
    );
  });
  return out;
}

const ratioPanel = names.includes('fm');
const H = PANEL * (ratioPanel ? 2 : 1);
const svg = [
  `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
  `<rect width="${W}" height="${H}" fill="white"/>`,
  ...panel(
    0,
    `x0 MSE on held-out images of cluster ${CLUSTER} (MNIST 16x16, micro DiT, ${steps} steps)`,
    (l, n) => l.mse[n],
    1e4,
  ),
];
if (ratioPanel)
  svg.push(...panel(PANEL, "x0 MSE over the FM expert's", (l, n) => l.mse[n] / l.mse.fm, 1e3));
names.forEach((name, k) => {
  const y = box.top + 14 + 20 * k;
  svg.push(
    `<line x1="${W - box.right + 12}" x2="${W - box.right + 36}" y1="${y}" y2="${y}" stroke="${colourOf(name, k)}" stroke-width="2"${dashOf(name)}/>`,
    `<text x="${W - box.right + 42}" y="${y + 4}">${name}</text>`,
  );
});
svg.push('</svg>');
await mkdir(path.dirname(FIGURE), { recursive: true });
await sharp(Buffer.from(svg.join('\n')))
  .png()
  .toFile(FIGURE);
note(`figure: ${FIGURE}`);
