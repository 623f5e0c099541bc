#!/usr/bin/env node
// The inference and training defaults by sample quality (issue 14 point 7; docs/method.md §17):
// the sampler and its steps, the guidance scale, the routing strategy and the FM experts' time
// sampling, each swept around the defaults on the demo's kind of ensemble: the built-in MNIST at
// 16 px, the demo's clustering into K = 4 (PCA features, K-means with seed 1), class-conditional
// micro DiT experts (labels with the workers' 10 % dropout) in the demo's mix, one v-prediction
// DDPM expert (cluster 0) and three FM experts, and a router that reads the class (trained as the
// coordinator trains a class-conditional run's router). The FM experts are trained twice with the
// same batches and weight seed, once with uniform times and once with logit-normal times.
//
// Every configuration draws DEFAULTS_SAMPLES class-conditional images (the classes in turn) from
// the same noise and scores them against images held out of all training: FD-cls (a Frechet
// distance in the features of a classifier trained on MNIST, not FID), precision, recall, the
// fragment index and class accuracy (the share the classifier assigns to the class asked for).
// The base configuration is the coordinator's defaults (Heun 16, guidance 3, SNR conversion)
// routed top-1 with logit-normal FM experts; each sweep changes one of them:
//   sampler: Heun 4, 8, 16, 32; Euler 16, 32 (Euler 32 costs what Heun 16 costs)
//   guidance: 1 (none), 2, 3, 5
//   routing: top-1, top-2, full
//   FM time sampling: logit-normal, uniform
// and one unconditional row (the null class, no guidance).
//
// Run after building (`npx turbo run build`): `node apps/coordinator/bench/defaults.mjs`.
// One JSON object per line on stdout (per seed: the reference, each expert, each score; then a
// summary with the mean, min and max over seeds); progress on stderr; the figure goes to
// DEFAULTS_FIGURE. Smoke (DEFAULTS_STEPS=2 DEFAULTS_ROUTER_STEPS=1 DEFAULTS_SAMPLES=10
// DEFAULTS_HELD=40 DEFAULTS_SEEDS=3, as test/bench/defaults.test.ts runs it).
// Environment:
//   DEFAULTS_SEEDS         comma-separated seeds: split, weights, batches, noise (default 0,1,2)
//   DEFAULTS_STEPS         training steps of every expert (default 300)
//   DEFAULTS_SAMPLES       samples per configuration (default 200: 20 of each class)
//   DEFAULTS_HELD          images held out of all training (default 1000)
//   DEFAULTS_ROUTER_STEPS  router training steps (default 400, the coordinator's default)
//   DEFAULTS_FIGURE        where the PNG goes (default out/defaults.png)
import { subsetImageSet } from '@archipelago/data';
import { deriveSeed } from '@archipelago/diffusion';
import { scoreImages } from '@archipelago/metrics';
import { initBackend } from '@archipelago/models';
import {
  barFigure,
  drawSamples,
  emit,
  FIELDS,
  figures,
  loadMnist,
  METRIC,
  note,
  positiveInt,
  RESOLUTION,
  round,
  seedList,
  splitAll,
  spread,
  trainExpert,
  trainRouter,
  velocityOf,
} from './lib/quality.mjs';

const STEPS = positiveInt('DEFAULTS_STEPS', 300);
const SAMPLES = positiveInt('DEFAULTS_SAMPLES', 200);
const HELD = positiveInt('DEFAULTS_HELD', 1000);
const ROUTER_STEPS = positiveInt('DEFAULTS_ROUTER_STEPS', 400);
const SEEDS = seedList('DEFAULTS_SEEDS', '0,1,2');
const FIGURE = process.env.DEFAULTS_FIGURE ?? 'out/defaults.png';
const K = 4;
const V_CLUSTER = 0;
const OBJECTIVES = {
  v: { name: 'ddpm', schedule: { kind: 'cosine' }, prediction: 'v' },
  'fm-logit-normal': { name: 'fm', timeSampling: { kind: 'logit-normal' } },
  'fm-uniform': { name: 'fm', timeSampling: { kind: 'uniform' } },
};
const BASE = {
  sampling: { sampler: 'heun', steps: 16 },
  guidance: 3,
  routing: { kind: 'top-k', k: 1 },
  fm: 'fm-logit-normal',
  conditional: true,
};
const ROUTING_NAMES = { 'top-k-1': 'top-1', 'top-k-2': 'top-2', full: 'full' };
const routingName = (r) => ROUTING_NAMES[`${r.kind}${r.k ? `-${r.k}` : ''}`];
/** Every configuration: what it changes from BASE and the sweep it belongs to. */
const CONFIGS = [
  { sweep: 'base', change: {} },
  ...[4, 8, 32].map((steps) => ({
    sweep: 'sampler',
    change: { sampling: { sampler: 'heun', steps } },
  })),
  ...[16, 32].map((steps) => ({
    sweep: 'sampler',
    change: { sampling: { sampler: 'euler', steps } },
  })),
  ...[1, 2, 5].map((guidance) => ({ sweep: 'guidance', change: { guidance } })),
  ...[{ kind: 'top-k', k: 2 }, { kind: 'full' }].map((routing) => ({
    sweep: 'routing',
    change: { routing },
  })),
  { sweep: 'fm time sampling', change: { fm: 'fm-uniform' } },
  { sweep: 'unconditional', change: { conditional: false, guidance: 1 } },
].map((c) => {
  const s = { ...BASE, ...c.change };
  const name = s.conditional
    ? `${s.sampling.sampler} ${s.sampling.steps}, guidance ${s.guidance}, ${routingName(s.routing)}, ${s.fm}`
    : `unconditional, ${s.sampling.sampler} ${s.sampling.steps}, ${routingName(s.routing)}, ${s.fm}`;
  return { ...c, settings: s, name };
});
const COLORS = {
  base: '#1f77b4',
  sampler: '#ff7f0e',
  guidance: '#2ca02c',
  routing: '#9467bd',
  'fm time sampling': '#d62728',
  unconditional: '#7f7f7f',
};

const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;
await initBackend({ backend: 'wasm' });
const { images, clusters, classifier, numClasses } = await loadMnist([K]);
note(
  `defaults: MNIST ${RESOLUTION} px (${images.count} images, ${HELD} held out), K = ${K} class-conditional (v on cluster ${V_CLUSTER}, FM elsewhere), ${STEPS} steps per expert, router ${ROUTER_STEPS} steps, ${SAMPLES} samples, ${CONFIGS.length} configurations, seeds ${SEEDS.join(',')}`,
);

async function runSeed(seed) {
  const { heldOut, train } = splitAll(images.count, HELD, seed, 'defaults-split');
  const real = subsetImageSet(images, heldOut);
  const floorRows = train.slice(0, Math.min(SAMPLES, train.length));
  const reference = figures(scoreImages(classifier, real, subsetImageSet(images, floorRows)));
  emit({ kind: 'reference', seed, metric: METRIC, images: floorRows.length, ...reference });
  const shards = Int32Array.from(train, (i) => clusters[K][i]);
  // nets[objective][cluster]: v on V_CLUSTER, both FM variants on the others.
  const nets = { v: [], 'fm-logit-normal': [], 'fm-uniform': [] };
  for (let c = 0; c < K; c++) {
    const rows = train.filter((_, i) => shards[i] === c);
    const names = c === V_CLUSTER ? ['v'] : ['fm-logit-normal', 'fm-uniform'];
    for (const name of names) {
      const { net, seconds, loss } = await trainExpert({
        images,
        rows,
        steps: STEPS,
        objective: OBJECTIVES[name],
        numClasses,
        weightSeed: deriveSeed(seed, `defaults-weights-${c}`),
        batchSeed: deriveSeed(seed, `defaults-batches-${c}`),
      });
      nets[name][c] = net;
      emit({
        kind: 'expert',
        seed,
        cluster: c,
        objective: name,
        images: rows.length,
        steps: STEPS,
        seconds: round(seconds, 1),
        loss: round(loss),
      });
      note(
        `seed ${seed}: cluster ${c} ${name} (${rows.length} images) ${seconds.toFixed(0)} s, at ${elapsed()}`,
      );
    }
  }
  const fit = await trainRouter({
    images,
    train,
    shards,
    k: K,
    steps: ROUTER_STEPS,
    seed,
    numClasses,
  });
  emit({ kind: 'router', seed, steps: ROUTER_STEPS, classes: numClasses, loss: round(fit.loss) });
  const noise = deriveSeed(seed, 'defaults-samples');
  const classes = Array.from({ length: SAMPLES }, (_, i) => i % numClasses);
  const configs = {};
  for (const c of CONFIGS) {
    const s = c.settings;
    const models = Array.from({ length: K }, (_, k) => {
      const name = k === V_CLUSTER ? 'v' : s.fm;
      return velocityOf(nets[name][k], OBJECTIVES[name]);
    });
    const { samples, expertsPerSample } = await drawSamples({
      models,
      router: fit.router,
      routing: s.routing,
      sampling: s.sampling,
      count: SAMPLES,
      seed: noise,
      numClasses,
      classes: s.conditional ? classes : null,
      guidance: s.guidance,
    });
    const scores = figures(scoreImages(classifier, real, samples));
    let classAccuracy = null;
    if (s.conditional) {
      const predicted = classifier.predict(samples);
      let hits = 0;
      for (let i = 0; i < SAMPLES; i++) if (predicted[i] === classes[i]) hits++;
      classAccuracy = round(hits / SAMPLES);
    }
    configs[c.name] = {
      ...scores,
      classAccuracy,
      expertsPerSample: round(expertsPerSample),
      samples,
    };
    emit({
      kind: 'score',
      seed,
      config: c.name,
      sweep: c.sweep,
      settings: s,
      metric: METRIC,
      samples: SAMPLES,
      ...scores,
      classAccuracy,
      expertsPerSample: round(expertsPerSample),
    });
    note(
      `seed ${seed}: ${c.name}: FD-cls ${scores.fdCls}, class accuracy ${classAccuracy}, at ${elapsed()}`,
    );
  }
  for (const list of Object.values(nets)) for (const n of list) n?.dispose();
  await fit.dispose();
  return { seed, reference, configs };
}

const runs = [];
for (const seed of SEEDS) runs.push(await runSeed(seed));

const fields = [...FIELDS, 'classAccuracy', 'expertsPerSample'];
const base = CONFIGS[0].name;
const summary = {
  kind: 'summary',
  metric: METRIC,
  resolution: RESOLUTION,
  k: K,
  stepsPerExpert: STEPS,
  routerSteps: ROUTER_STEPS,
  samples: SAMPLES,
  heldOut: HELD,
  seeds: SEEDS,
  base,
  reference: Object.fromEntries(FIELDS.map((f) => [f, spread(runs.map((r) => r.reference[f]))])),
  configs: Object.fromEntries(
    CONFIGS.map((c) => [
      c.name,
      {
        sweep: c.sweep,
        settings: c.settings,
        ...Object.fromEntries(
          fields.map((f) => [f, spread(runs.map((r) => r.configs[c.name][f]))]),
        ),
        // FD-cls over the base configuration's, per seed; and on how many seeds it is lower.
        overBase: spread(runs.map((r) => r.configs[c.name].fdCls / r.configs[base].fdCls)),
        betterOnSeeds: runs.filter((r) => r.configs[c.name].fdCls < r.configs[base].fdCls).length,
      },
    ]),
  ),
  seconds: round((performance.now() - started) / 1000, 1),
};
emit(summary);

await barFigure({
  file: FIGURE,
  title: `MNIST 16 px, K = 4 class-conditional micro DiT experts (1 v, 3 FM), ${STEPS} steps each, ${SEEDS.length} seeds; ${SAMPLES} samples vs ${HELD} held-out`,
  subtitle:
    'FD-cls (Frechet distance in an MNIST classifier’s features, not FID): bar = mean, whisker = min-max; dashed = real training images',
  floor: summary.reference.fdCls,
  rows: CONFIGS.map((c) => {
    const s = summary.configs[c.name];
    return {
      name: c.name,
      fdCls: s.fdCls,
      color: COLORS[c.sweep],
      lines: [
        `${c.sweep}; over base ${s.overBase.mean.toFixed(2)}x, lower on ${s.betterOnSeeds} of ${SEEDS.length} seeds`,
        `precision ${s.precision.mean.toFixed(2)}, recall ${s.recall.mean.toFixed(2)}${s.classAccuracy.mean === null ? '' : `, class acc. ${s.classAccuracy.mean.toFixed(2)}`}`,
        `fragmented ${(100 * s.fragmented.mean).toFixed(0)} %, ${s.expertsPerSample.mean.toFixed(2)} experts/sample`,
      ],
      samples: runs[0].configs[c.name].samples,
    };
  }),
});
note(`defaults: ${summary.seconds} s; figure ${FIGURE}`);
