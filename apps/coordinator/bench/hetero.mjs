#!/usr/bin/env node
// Heterogeneous ensembles by sample quality (issue 14 point 6; docs/method.md §16): the paper's
// 8 FM vs 2 DDPM : 6 FM vs 8 DDPM on the built-in MNIST at the demo's scale (16 px, the demo's
// clustering into K = 8: PCA features, K-means with seed 1), micro DiT experts trained with
// bench/lib/quality.mjs's recipe (the demo's batch, learning rate and EMA; unconditional). Per seed
// and cluster one FM expert (uniform times, the paper's), one epsilon DDPM expert (cosine) and one
// v-prediction DDPM expert (cosine; the demo's DDPM expert) are trained with the same steps, the
// same batches and the same weight seed, so that the mixes differ only in the objective of their
// experts. The mixes share one router (trained as the coordinator trains it):
//   8 FM; 2 eps : 6 FM; 8 eps; 2 v : 6 FM; 8 v
// The two DDPM experts of a mix sit on clusters (2s, 2s + 1) mod 8 for seed s, so that the
// spread covers which clusters they hold. DDPM experts are converted to velocity as the manifest's
// defaults convert them (SNR-matched, alphaMin 0.01, x0 clamp [-1, 1]). Every mix is sampled with
// the coordinator's default sampler (Heun, 16 steps) from the same noise, routed top-1 and full,
// and scored against images held out of all training by FD-cls (a Frechet distance in the
// features of a classifier trained on MNIST, not FID), precision, recall and the fragment index;
// as many real training images are the floor.
//
// Run after building (`npx turbo run build`): `node apps/coordinator/bench/hetero.mjs`.
// One JSON object per line on stdout (per seed: the reference, each expert, each score; then a
// summary with the mean, min and max over seeds); progress on stderr; the figure (FD-cls per mix
// and routing with its spread, beside a grid of the first seed's samples) goes to HETERO_FIGURE.
// Smoke (HETERO_STEPS=2 HETERO_ROUTER_STEPS=1 HETERO_SAMPLES=8 HETERO_HELD=32 HETERO_SEEDS=3, as
// test/bench/hetero.test.ts runs it).
// Environment:
//   HETERO_SEEDS         comma-separated seeds: split, weights, batches, noise (default 0,1,2)
//   HETERO_STEPS         training steps of every expert (default 240)
//   HETERO_SAMPLES       samples per configuration (default 256)
//   HETERO_HELD          images held out of all training (default 1000)
//   HETERO_ROUTER_STEPS  router training steps (default 400, the coordinator's routerSteps default)
//   HETERO_FIGURE        where the PNG goes (default out/hetero.png)
//   HETERO_FROM          JSON lines of another process's seeds (its reference and score lines), read
//                        at the end and summarised with this process's: seeds measured in parallel
//                        (the figure's samples are this process's first seed; with HETERO_SEEDS
//                        empty nothing is measured and the figure has no samples)
import { readFile } from 'node:fs/promises';
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

const STEPS = positiveInt('HETERO_STEPS', 240);
const SAMPLES = positiveInt('HETERO_SAMPLES', 256);
const HELD = positiveInt('HETERO_HELD', 1000);
const ROUTER_STEPS = positiveInt('HETERO_ROUTER_STEPS', 400);
// HETERO_SEEDS= (empty) measures nothing: the summary and figure of HETERO_FROM's seeds alone.
const SEEDS = process.env.HETERO_SEEDS === '' ? [] : seedList('HETERO_SEEDS', '0,1,2');
if (SEEDS.length === 0 && !process.env.HETERO_FROM)
  throw new RangeError('HETERO_SEEDS is empty: name the seeds to summarise in HETERO_FROM');
const FIGURE = process.env.HETERO_FIGURE ?? 'out/hetero.png';
const K = 8;
const HEUN = { sampler: 'heun', steps: 16 };
const cosine = { kind: 'cosine' };
const OBJECTIVES = {
  fm: { name: 'fm', timeSampling: { kind: 'uniform' } },
  eps: { name: 'ddpm', schedule: cosine },
  v: { name: 'ddpm', schedule: cosine, prediction: 'v' },
};
/** The mixes: the objective of the two DDPM clusters' experts and of the other six. */
const MIXES = [
  { name: '8 FM', ddpm: 'fm', rest: 'fm', color: '#1f77b4' },
  { name: '2 eps : 6 FM', ddpm: 'eps', rest: 'fm', color: '#ff7f0e' },
  { name: '8 eps', ddpm: 'eps', rest: 'eps', color: '#d62728' },
  { name: '2 v : 6 FM', ddpm: 'v', rest: 'fm', color: '#2ca02c' },
  { name: '8 v', ddpm: 'v', rest: 'v', color: '#9467bd' },
];
const ROUTINGS = [
  { name: 'top-1', strategy: { kind: 'top-k', k: 1 } },
  { name: 'full', strategy: { kind: 'full' } },
];
const CONFIGS = MIXES.flatMap((m) => ROUTINGS.map((r) => ({ name: `${m.name}, ${r.name}`, m, r })));

const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;
await initBackend({ backend: 'wasm' });
const { images, clusters, classifier } = await loadMnist([K]);
note(
  `hetero: MNIST ${RESOLUTION} px (${images.count} images, ${HELD} held out), K = ${K}, ${STEPS} steps per expert, router ${ROUTER_STEPS} steps, ${SAMPLES} samples, seeds ${SEEDS.join(',')}`,
);

async function runSeed(seed) {
  const { heldOut, train } = splitAll(images.count, HELD, seed, 'hetero-split');
  const real = subsetImageSet(images, heldOut);
  const floorRows = train.slice(0, Math.min(SAMPLES, train.length));
  const reference = figures(scoreImages(classifier, real, subsetImageSet(images, floorRows)));
  emit({ kind: 'reference', seed, metric: METRIC, images: floorRows.length, ...reference });
  const shards = Int32Array.from(train, (i) => clusters[K][i]);
  const ddpmClusters = [(2 * seed) % K, (2 * seed + 1) % K];
  // Which objectives each cluster needs: FM everywhere, eps and v everywhere (the 8-expert mixes).
  const nets = { fm: [], eps: [], v: [] };
  for (let c = 0; c < K; c++) {
    const rows = train.filter((_, i) => shards[i] === c);
    for (const [name, objective] of Object.entries(OBJECTIVES)) {
      const { net, seconds, loss } = await trainExpert({
        images,
        rows,
        steps: STEPS,
        objective,
        weightSeed: deriveSeed(seed, `hetero-weights-${c}`),
        batchSeed: deriveSeed(seed, `hetero-batches-${c}`),
      });
      nets[name].push(net);
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
  const fit = await trainRouter({ images, train, shards, k: K, steps: ROUTER_STEPS, seed });
  emit({ kind: 'router', seed, steps: ROUTER_STEPS, loss: round(fit.loss) });
  const noise = deriveSeed(seed, 'hetero-samples');
  const configs = {};
  for (const c of CONFIGS) {
    const models = Array.from({ length: K }, (_, k) => {
      const name = ddpmClusters.includes(k) ? c.m.ddpm : c.m.rest;
      return velocityOf(nets[name][k], OBJECTIVES[name]);
    });
    const { samples, expertsPerSample } = await drawSamples({
      models,
      router: fit.router,
      routing: c.r.strategy,
      sampling: HEUN,
      count: SAMPLES,
      seed: noise,
    });
    const scores = figures(scoreImages(classifier, real, samples));
    configs[c.name] = { ...scores, expertsPerSample: round(expertsPerSample), samples };
    emit({
      kind: 'score',
      seed,
      config: c.name,
      mix: c.m.name,
      routing: c.r.strategy,
      ddpmClusters,
      metric: METRIC,
      samples: SAMPLES,
      ...scores,
      expertsPerSample: round(expertsPerSample),
    });
    note(`seed ${seed}: ${c.name}: FD-cls ${scores.fdCls}, at ${elapsed()}`);
  }
  for (const list of Object.values(nets)) for (const n of list) n.dispose();
  await fit.dispose();
  return { seed, reference, configs };
}

const runs = [];
for (const seed of SEEDS) runs.push(await runSeed(seed));
// Seeds another process measured (HETERO_FROM): each needs its reference and every score.
if (process.env.HETERO_FROM) {
  const lines = (await readFile(process.env.HETERO_FROM, 'utf8'))
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l));
  const seeds = [...new Set(lines.filter((l) => l.kind === 'reference').map((l) => l.seed))];
  for (const seed of seeds) {
    if (runs.some((r) => r.seed === seed))
      throw new Error(`HETERO_FROM: seed ${seed} was measured here too`);
    const reference = lines.find((l) => l.kind === 'reference' && l.seed === seed);
    const configs = {};
    for (const l of lines) if (l.kind === 'score' && l.seed === seed) configs[l.config] = l;
    const missing = CONFIGS.filter((c) => !configs[c.name]).map((c) => c.name);
    if (missing.length > 0)
      throw new Error(`HETERO_FROM: seed ${seed} lacks ${missing.join(', ')}`);
    runs.push({ seed, reference, configs });
  }
  runs.sort((a, b) => a.seed - b.seed);
}
const sampled = runs.find((r) => r.seed === SEEDS[0]);

const fields = [...FIELDS, 'expertsPerSample'];
const summary = {
  kind: 'summary',
  metric: METRIC,
  resolution: RESOLUTION,
  k: K,
  stepsPerExpert: STEPS,
  routerSteps: ROUTER_STEPS,
  samples: SAMPLES,
  heldOut: HELD,
  sampler: HEUN,
  seeds: runs.map((r) => r.seed),
  reference: Object.fromEntries(FIELDS.map((f) => [f, spread(runs.map((r) => r.reference[f]))])),
  configs: Object.fromEntries(
    CONFIGS.map((c) => [
      c.name,
      Object.fromEntries(fields.map((f) => [f, spread(runs.map((r) => r.configs[c.name][f]))])),
    ]),
  ),
  // Each mix's FD-cls over 8 FM's with the same routing, per seed.
  overFm: Object.fromEntries(
    CONFIGS.map((c) => [
      c.name,
      spread(runs.map((r) => r.configs[c.name].fdCls / r.configs[`8 FM, ${c.r.name}`].fdCls)),
    ]),
  ),
  seconds: round((performance.now() - started) / 1000, 1),
};
emit(summary);

await barFigure({
  file: FIGURE,
  title: `MNIST 16 px, K = 8 micro DiT experts, ${STEPS} steps each (same batches per cluster), ${runs.length} seeds; ${SAMPLES} samples (Heun 16) vs ${HELD} held-out`,
  subtitle:
    'FD-cls (Frechet distance in an MNIST classifier’s features, not FID): bar = mean, whisker = min-max; dashed = real training images',
  floor: summary.reference.fdCls,
  rows: CONFIGS.map((c) => {
    const s = summary.configs[c.name];
    return {
      name: c.name,
      fdCls: s.fdCls,
      color: c.m.color,
      lines: [
        `over 8 FM: ${summary.overFm[c.name].mean.toFixed(2)}x`,
        `precision ${s.precision.mean.toFixed(2)}, recall ${s.recall.mean.toFixed(2)}`,
        `fragmented ${(100 * s.fragmented.mean).toFixed(0)} %`,
      ],
      samples: sampled?.configs[c.name].samples,
    };
  }),
});
note(`hetero: ${summary.seconds} s; figure ${FIGURE}`);
