#!/usr/bin/env node
// FM from a converted DDPM checkpoint vs FM from scratch (docs/method.md §7, issue 14): a DDPM
// (epsilon, cosine) monolith is trained on the whole training set of the built-in MNIST at the
// demo's scale (16 px, the micro DiT), converted with convertDdpmToFm, and an FM expert of one
// cluster is trained from it and from random weights with the same batches, seed and learning
// rate; the held-out FM loss (the same noised batch for both) is measured along the way, and at a
// few step counts both experts are sampled (the coordinator's sampler and steps, the same noise
// for both) and scored against the cluster's held-out images by FD-cls, precision, recall and the
// fragment index (@archipelago/metrics). What a run with `initFrom` naming a K = 1 DDPM run does,
// without the coordinator.
//
// FD-cls is a Frechet distance in the penultimate features of an MLP classifier trained on the
// dataset itself (the shipped mnist-16 classifier), not FID.
//
// Run after building (`npx turbo run build`): `node apps/coordinator/bench/ddpm-init.mjs`, or
// `INIT_SEEDS=0,1,2 node apps/coordinator/bench/ddpm-init.mjs` for three seeds in one process (a
// last line gives the mean, min, max and std of steps-to-loss and FD-cls at equal steps).
// One JSON object per line on stdout (per seed: the donor, the reference, one per evaluation and
// per score, a summary; then the seeds summary); progress on stderr; the figure (held-out loss
// and FD-cls against steps, both curves of every seed) goes to INIT_FIGURE.
// Environment:
//   INIT_DONOR_STEPS   DDPM monolith training steps (default 400)
//   INIT_STEPS         FM training steps of each of the two experts (default 300)
//   INIT_EVERY         steps between held-out loss evaluations (default 25)
//   INIT_SCORE_EVERY   steps between sample-quality scores, and at the end (default 50)
//   INIT_SAMPLES       samples per score (default 256)
//   INIT_SAMPLER       sampler of the scores (default heun, the coordinator's DEFAULT_INFERENCE)
//   INIT_SAMPLE_STEPS  its steps (default 16, likewise)
//   INIT_CLUSTER       which of the K = 4 clusters the FM experts train on (default 0; seed 1)
//   INIT_EVAL          held-out images of that cluster (default 256)
//   INIT_SEED          seed of the weights, batches, split, noise and times (default 0)
//   INIT_SEEDS         comma-separated seeds run one after the other (overrides INIT_SEED)
//   INIT_FIGURE        where the PNG goes (default out/ddpm-init.png)
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import {
  clusterDataset,
  computeFeatures,
  createRng,
  loadBuiltinDataset,
  subsetImageSet,
} from '@archipelago/data';
import { deriveSeed, sample, velocityExpert } from '@archipelago/diffusion';
import { loadShippedClassifier, scoreImages } from '@archipelago/metrics';
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
const SCORE_EVERY = Number(process.env.INIT_SCORE_EVERY ?? 50);
const SAMPLES = Number(process.env.INIT_SAMPLES ?? 256);
const SAMPLING = {
  sampler: process.env.INIT_SAMPLER ?? 'heun',
  steps: Number(process.env.INIT_SAMPLE_STEPS ?? 16),
};
const CLUSTER = Number(process.env.INIT_CLUSTER ?? 0);
const EVAL = Number(process.env.INIT_EVAL ?? 256);
const SEEDS = (process.env.INIT_SEEDS ?? process.env.INIT_SEED ?? '0').split(',').map(Number);
const FIGURE = process.env.INIT_FIGURE ?? 'out/ddpm-init.png';
for (const [name, v] of Object.entries({ STEPS, EVERY, SCORE_EVERY, SAMPLES, EVAL }))
  if (!(Number.isInteger(v) && v > 0))
    throw new RangeError(`INIT_${name} must be a positive integer, got ${v}`);
if (!SEEDS.every(Number.isInteger))
  throw new RangeError(`INIT_SEEDS must list integers, got ${SEEDS}`);
// The demo's training settings (apps/coordinator/src/demo.ts DEMO_DEFAULTS, the worker's warm-up),
// unconditional.
const RESOLUTION = 16;
const BATCH = 32;
const LEARNING_RATE = 2e-3;
const EVAL_SEED = 12345;
const METRIC =
  'FD-cls (Frechet distance in the features of an MLP classifier trained on MNIST, not FID)';
const note = (line) => process.stderr.write(`${line}\n`);
const emit = (record) => process.stdout.write(`${JSON.stringify(record)}\n`);
const round = (x, digits = 4) => (x === null ? null : Number(x.toFixed(digits)));

const started = performance.now();
await initBackend({ backend: 'wasm' });

// ---- Data: the demo's clustering (PCA features, K = 4, seed 1).
const images = await loadBuiltinDataset('mnist', { resolution: RESOLUTION });
const features = await computeFeatures(images, { seed: 1 });
const clusters = await clusterDataset(features.features, features.n, features.d, { k: 4, seed: 1 });
const size = RESOLUTION * RESOLUTION;
const cluster = [];
for (let i = 0; i < images.count; i++) if (clusters.assignments[i] === CLUSTER) cluster.push(i);
const { classifier, entry: classifierEntry } = await loadShippedClassifier('mnist', RESOLUTION);

const config = ditConfigFromPreset('micro', {
  imageSize: RESOLUTION,
  channels: 1,
  numClasses: 0,
  patchSize: 4,
});
const network = { kind: 'dit', config };
const fm = { name: 'fm', timeSampling: { kind: 'uniform' } };

/** The seed's split: the cluster's held-out images (held out from the donor too) and the rest. */
function split(seed) {
  const members = cluster.slice();
  const rng = createRng(deriveSeed(seed, 'split'));
  for (let i = members.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [members[i], members[j]] = [members[j], members[i]];
  }
  const heldOut = members.slice(0, EVAL);
  const held = new Set(heldOut);
  const all = Array.from({ length: images.count }, (_, i) => i).filter((i) => !held.has(i));
  return { heldOut, clusterTrain: members.slice(EVAL), all };
}

/** `[rows, 16, 16, 1]` floats in [-1, 1]. */
function toFloat(rows) {
  const out = new Float32Array(rows.length * size);
  rows.forEach((r, i) => {
    for (let p = 0; p < size; p++) out[i * size + p] = images.pixels[r * size + p] / 127.5 - 1;
  });
  return { data: out, shape: [rows.length, RESOLUTION, RESOLUTION, 1] };
}

/** Train `trainer` for `steps` on batches of `rows` (indices from `seedLabel`), calling `each`. */
async function train(trainer, seed, rows, steps, seedLabel, each) {
  const batchRng = createRng(deriveSeed(seed, seedLabel));
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

/** SAMPLES images of the FM expert `trainer` with SAMPLING, from the noise of `seed`, as bytes. */
async function sampleExpert(trainer, seed) {
  const model = velocityExpert({ objective: trainer.objective.config, network: trainer.network() });
  const x0 = sample(model, [SAMPLES, RESOLUTION, RESOLUTION, 1], seed, SAMPLING);
  // [-1, 1] -> bytes, as the coordinator's sampler writes them.
  const bytes = tf.tidy(() =>
    tf.cast(tf.round(tf.mul(tf.add(tf.clipByValue(x0, -1, 1), 1), 127.5)), 'int32'),
  );
  const pixels = Uint8Array.from(await bytes.data());
  tf.dispose([x0, bytes]);
  return { count: SAMPLES, height: RESOLUTION, width: RESOLUTION, channels: 1, pixels };
}

/** The figures of one score that the JSON lines and the summary carry. */
const scoreFigures = (s) => ({
  fdCls: round(s.fdCls),
  precision: round(s.precision),
  recall: round(s.recall),
  intraClassDiversity: round(s.intraClassDiversity),
  meanComponents: round(s.fragments.generated.meanComponents),
  fragmented: round(s.fragments.generated.fragmented),
  empty: round(s.fragments.generated.empty),
});

/** One seed: the donor, then the two FM experts; returns their curves and scores. */
async function runSeed(seed) {
  const seedStart = performance.now();
  const { heldOut, clusterTrain, all } = split(seed);
  const evalX = toFloat(heldOut);
  const real = subsetImageSet(images, heldOut);
  note(
    `seed ${seed}: donor ${all.length} images; cluster ${CLUSTER}: ${clusterTrain.length} train, ${EVAL} held out`,
  );
  // The floor: as many real training images of the cluster as samples, scored the same way.
  const refRows = clusterTrain.slice(0, Math.min(SAMPLES, clusterTrain.length));
  const reference = scoreFigures(scoreImages(classifier, real, subsetImageSet(images, refRows)));
  emit({ kind: 'reference', seed, metric: 'FD-cls', images: refRows.length, ...reference });

  // ---- The donor: a DDPM monolith on every training image.
  note(`seed ${seed}: training the DDPM donor for ${DONOR_STEPS} steps`);
  const donorStart = performance.now();
  const donor = await ExpertTrainer.create({
    network,
    objective: { name: 'ddpm', schedule: { kind: 'cosine' } },
    optimizer: { learningRate: LEARNING_RATE },
    seed,
  });
  await train(donor, seed, all, DONOR_STEPS, 'donor-batches');
  const donorBytes = await donor.save();
  await donor.dispose();
  const init = await convertDdpmToFm(donorBytes);
  emit({
    kind: 'donor',
    seed,
    objective: 'ddpm',
    steps: DONOR_STEPS,
    images: all.length,
    seconds: round((performance.now() - donorStart) / 1000, 1),
  });

  // ---- The two FM experts of the cluster: the same batches, seed, schedule of learning rates
  // and, at each score, the same sampling noise.
  const curves = {};
  const scores = {};
  const sampleSeed = deriveSeed(seed, 'score-samples');
  for (const [name, from] of [
    ['converted', { init }],
    ['scratch', {}],
  ]) {
    note(`seed ${seed}: training FM (${name}) for ${STEPS} steps`);
    const trainer = await ExpertTrainer.create({
      network,
      objective: fm,
      optimizer: { learningRate: LEARNING_RATE },
      seed: seed + 1,
      ...from,
    });
    const curve = [[0, trainer.evalLoss(evalX, EVAL_SEED)]];
    const scored = [];
    await train(trainer, seed, clusterTrain, STEPS, 'fm-batches', async (s) => {
      if (s % EVERY === 0 || s === STEPS) {
        const loss = trainer.evalLoss(evalX, EVAL_SEED);
        curve.push([s, loss]);
        emit({ kind: 'eval', seed, init: name, step: s, heldOutLoss: loss });
      }
      if (s % SCORE_EVERY === 0 || s === STEPS) {
        const t0 = performance.now();
        const samples = await sampleExpert(trainer, sampleSeed);
        const figures = scoreFigures(scoreImages(classifier, real, samples));
        scored.push({ step: s, ...figures });
        emit({
          kind: 'score',
          seed,
          init: name,
          step: s,
          metric: 'FD-cls',
          samples: SAMPLES,
          sampling: SAMPLING,
          ...figures,
          seconds: round((performance.now() - t0) / 1000, 1),
        });
      }
    });
    curves[name] = curve;
    scores[name] = scored;
    await trainer.dispose();
  }

  // ---- The seed's summary: steps each needs to reach a loss, the scores at equal steps.
  const reach = (curve, target) => curve.find(([, l]) => l <= target)?.[0] ?? null;
  const scratchFinal = curves.scratch.at(-1)[1];
  const targets = [0.5, 0.75, 1].map((fraction) => {
    // Fractions of the way from the step-0 loss to scratch's final loss.
    const target = curves.scratch[0][1] - fraction * (curves.scratch[0][1] - scratchFinal);
    return {
      fraction,
      target,
      convertedSteps: reach(curves.converted, target),
      scratchSteps: reach(curves.scratch, target),
    };
  });
  const summary = {
    kind: 'summary',
    seed,
    donorSteps: DONOR_STEPS,
    steps: STEPS,
    cluster: CLUSTER,
    finalLoss: { converted: curves.converted.at(-1)[1], scratch: scratchFinal },
    reach: targets,
    metric: 'FD-cls',
    samples: SAMPLES,
    sampling: SAMPLING,
    scores: scores.converted.map((c, i) => ({
      step: c.step,
      converted: c,
      scratch: scores.scratch[i],
    })),
    reference,
    seconds: round((performance.now() - seedStart) / 1000, 1),
  };
  emit(summary);
  return { seed, curves, scores, reference, summary };
}

const runs = [];
for (const seed of SEEDS) runs.push(await runSeed(seed));
classifier.dispose();

// ---- Across seeds: mean, min, max and (population) std of each figure.
function spread(values) {
  const v = values.filter((x) => x !== null);
  if (v.length === 0) return { values, mean: null, min: null, max: null, std: null };
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
  return {
    values,
    mean: round(mean),
    min: Math.min(...v),
    max: Math.max(...v),
    std: round(std),
  };
}
if (runs.length > 1) {
  const first = runs[0].summary;
  emit({
    kind: 'seeds',
    seeds: SEEDS,
    donorSteps: DONOR_STEPS,
    steps: STEPS,
    cluster: CLUSTER,
    finalLoss: {
      converted: spread(runs.map((r) => round(r.summary.finalLoss.converted))),
      scratch: spread(runs.map((r) => round(r.summary.finalLoss.scratch))),
    },
    reach: first.reach.map(({ fraction }, i) => ({
      fraction,
      convertedSteps: spread(runs.map((r) => r.summary.reach[i].convertedSteps)),
      scratchSteps: spread(runs.map((r) => r.summary.reach[i].scratchSteps)),
    })),
    metric: 'FD-cls',
    samples: SAMPLES,
    sampling: SAMPLING,
    scores: first.scores.map(({ step }, i) => {
      const at = (name, key) => spread(runs.map((r) => r.scores[name][i][key]));
      return {
        step,
        fdCls: { converted: at('converted', 'fdCls'), scratch: at('scratch', 'fdCls') },
        precision: { converted: at('converted', 'precision'), scratch: at('scratch', 'precision') },
        recall: { converted: at('converted', 'recall'), scratch: at('scratch', 'recall') },
        meanComponents: {
          converted: at('converted', 'meanComponents'),
          scratch: at('scratch', 'meanComponents'),
        },
      };
    }),
    reference: { fdCls: spread(runs.map((r) => r.reference.fdCls)) },
    classifier: { file: classifierEntry.file, heldOutAccuracy: classifierEntry.heldOutAccuracy },
    seconds: round((performance.now() - started) / 1000, 1),
  });
}

// ---- Figure: held-out FM loss (top) and FD-cls (bottom) against steps, every seed.
const W = 720;
const PANEL = 360;
const pad = 56;
const COLOURS = { converted: '#c0392b', scratch: '#888888' };
const DASHES = ['', '6 3', '2 3', '10 3 2 3'];
const px = (s) => pad + ((W - 2 * pad) * s) / STEPS;
/** One panel of curves; `log`: a logarithmic y axis with ticks at 1, 2 and 5 times powers of 10. */
function panel(top, series, title, referenceValue, digits, log) {
  const values = series.flatMap(({ points }) => points.map(([, v]) => v));
  if (referenceValue !== null) values.push(referenceValue);
  const [lo, hi] = [Math.min(...values), Math.max(...values)];
  const f = log ? Math.log10 : (v) => v;
  const py = (v) => top + PANEL - pad - ((PANEL - 2 * pad) * (f(v) - f(lo))) / (f(hi) - f(lo) || 1);
  const yTicks = [];
  if (log)
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++)
      for (const m of [1, 2, 5])
        if (m * 10 ** e >= lo && m * 10 ** e <= hi) yTicks.push(m * 10 ** e);
  const yAxis = yTicks
    .map(
      (v) =>
        `<line x1="${pad - 5}" y1="${py(v).toFixed(1)}" x2="${pad}" y2="${py(v).toFixed(1)}" stroke="black"/><text x="${pad - 8}" y="${(py(v) + 4).toFixed(1)}" font-size="11" text-anchor="end">${v}</text>`,
    )
    .join('');
  const lines = series.map(
    ({ points, colour, dash, marks }) =>
      `<polyline fill="none" stroke="${colour}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${points
        .map(([s, v]) => `${px(s).toFixed(1)},${py(v).toFixed(1)}`)
        .join(' ')}"/>${
        marks
          ? points
              .map(
                ([s, v]) =>
                  `<circle cx="${px(s).toFixed(1)}" cy="${py(v).toFixed(1)}" r="3" fill="${colour}"/>`,
              )
              .join('')
          : ''
      }`,
  );
  // Ticks at the scores (at most about a dozen) and the end.
  const tick = SCORE_EVERY * Math.ceil(STEPS / SCORE_EVERY / 12);
  const ticks = [];
  for (let s = 0; s <= STEPS; s += tick) ticks.push(s);
  if (ticks.at(-1) !== STEPS) ticks.push(STEPS);
  const axis = ticks
    .map(
      (s) =>
        `<line x1="${px(s).toFixed(1)}" y1="${top + PANEL - pad}" x2="${px(s).toFixed(1)}" y2="${top + PANEL - pad + 5}" stroke="black"/><text x="${px(s).toFixed(1)}" y="${top + PANEL - pad + 18}" font-size="11" text-anchor="middle">${s}</text>`,
    )
    .join('');
  const ref =
    referenceValue === null
      ? ''
      : `<line x1="${pad}" y1="${py(referenceValue).toFixed(1)}" x2="${W - pad}" y2="${py(referenceValue).toFixed(1)}" stroke="#2471a3" stroke-dasharray="4 4"/><text x="${pad + 6}" y="${(py(referenceValue) - 6).toFixed(1)}" font-size="12" fill="#2471a3">as many real training images of the cluster${runs.length > 1 ? ' (mean of the seeds)' : ''}: ${referenceValue.toFixed(1)}</text>`;
  return `<line x1="${pad}" y1="${top + PANEL - pad}" x2="${W - pad}" y2="${top + PANEL - pad}" stroke="black"/>
<line x1="${pad}" y1="${top + pad}" x2="${pad}" y2="${top + PANEL - pad}" stroke="black"/>
<text x="${pad}" y="${top + pad - 22}" font-size="14">${title}</text>
<text x="${pad}" y="${top + pad - 6}" font-size="12" fill="#444">${hi.toFixed(digits)} (top) to ${lo.toFixed(digits)} (bottom)</text>
${axis}${yAxis}${ref}${lines.join('')}`;
}
const seriesOf = (pick, marks) =>
  runs.flatMap((r, i) =>
    ['scratch', 'converted'].map((name) => ({
      points: pick(r, name),
      colour: COLOURS[name],
      dash: DASHES[i % DASHES.length],
      marks,
    })),
  );
const DASH_NAMES = ['solid', 'dashed', 'dotted', 'dash-dot'];
const seedsLabel =
  SEEDS.length > 1
    ? `seeds ${SEEDS.map((s, i) => `${s} ${DASH_NAMES[i % DASH_NAMES.length]}`).join(', ')}`
    : `seed ${SEEDS[0]}`;
const meanReference = runs.reduce((a, r) => a + r.reference.fdCls, 0) / Math.max(1, runs.length);
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${2 * PANEL + 40}" font-family="DejaVu Sans, sans-serif">
<rect width="100%" height="100%" fill="white"/>
${panel(
  0,
  seriesOf((r, name) => r.curves[name], false),
  `held-out FM loss (cluster ${CLUSTER}, ${EVAL} images)`,
  null,
  3,
  false,
)}
${panel(
  PANEL,
  seriesOf((r, name) => r.scores[name].map((s) => [s.step, s.fdCls]), true),
  `FD-cls (log scale) of ${SAMPLES} samples (${SAMPLING.sampler} ${SAMPLING.steps} steps) vs the held-out images`,
  meanReference,
  1,
  true,
)}
<text x="${W - pad}" y="${pad + 10}" font-size="13" text-anchor="end" fill="${COLOURS.converted}">from the converted DDPM monolith (${DONOR_STEPS} steps)</text>
<text x="${W - pad}" y="${pad + 28}" font-size="13" text-anchor="end" fill="${COLOURS.scratch}">from scratch</text>
<text x="${W / 2}" y="${2 * PANEL - 20}" font-size="14" text-anchor="middle">FM training step (${seedsLabel})</text>
<text x="${W / 2}" y="${2 * PANEL + 4}" font-size="12" text-anchor="middle" fill="#444">${METRIC}</text>
</svg>`;
await mkdir(path.dirname(FIGURE), { recursive: true });
await sharp(Buffer.from(svg)).png().toFile(FIGURE);
note(`figure: ${FIGURE}; ${((performance.now() - started) / 1000).toFixed(0)} s`);
