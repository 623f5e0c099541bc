#!/usr/bin/env node
// Sampling throughput and latency of an ensemble per routing strategy (top-1, top-2, full), with
// the ratio to one expert sampled alone, and the router's share of a top-1 step.
// The demo's ensemble (out/demo/manifest.json, or BENCH_MANIFEST) when it exists; otherwise an
// ensemble of the demo's shape (4 micro DiT experts with 4x4 patches, 1 DDPM + 3 FM, 16x16x1,
// 10 classes, and its router) at initial weights: the cost of a forward pass does not depend on
// the weights. One JSON object per line on stdout.
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { euler, initialNoise, timeGrid, velocityExpert } from '@archipelago/diffusion';
import {
  ditConfigFromPreset,
  ExpertTrainer,
  initBackend,
  RouterTrainer,
} from '@archipelago/models';
import { MANIFEST_SCHEMA_ID } from '@archipelago/protocol';
import * as tf from '@tensorflow/tfjs-core';
import { LoadedEnsemble } from '../dist/ensembles/loaded-ensemble.js';
import { openManifest, verifyEnsemble } from '../dist/ensembles/manifest-source.js';
import { networkFromCheckpoint } from '../dist/ensembles/network-from-checkpoint.js';
import { routerConfigFor } from '../dist/services/router-training.js';

const BATCH = Number(process.env.BENCH_SAMPLE_BATCH ?? 16);
const STEPS = 16;
const REPEATS = 3;
const backend = await initBackend({ backend: process.env.BENCH_SAMPLE_BACKEND ?? 'wasm' });
const root = path.resolve(import.meta.dirname, '../../..');
const manifestPath = process.env.BENCH_MANIFEST ?? path.join(root, 'out/demo/manifest.json');

/** The demo's image side (MNIST downsampled to 16x16). */
const SIZE = 16;

async function syntheticEnsemble() {
  const config = ditConfigFromPreset('micro', {
    imageSize: SIZE,
    channels: 1,
    numClasses: 10,
    patchSize: 4,
  });
  const files = new Map();
  const experts = [];
  for (let k = 0; k < 4; k++) {
    const objective =
      k < 1
        ? { name: 'ddpm', schedule: { kind: 'cosine' } }
        : { name: 'fm', timeSampling: { kind: 'uniform' } };
    const t = await ExpertTrainer.create({
      network: { kind: 'dit', config },
      objective,
      optimizer: { learningRate: 1e-3 },
      seed: k,
    });
    const bytes = await t.save();
    await t.dispose();
    const uri = `checkpoints/expert-${k}.safetensors`;
    files.set(uri, bytes);
    experts.push({
      cluster: k,
      objective: objective.name,
      spec: objective,
      checkpoint: { uri, key: uri, sha256: await sha(bytes), bytes: bytes.byteLength },
      steps: 0,
      trainImages: 0,
      validationLoss: 0,
      baselineLoss: 1,
    });
  }
  const rc = routerConfigFor(SIZE, 1, 4, 4);
  const r = await RouterTrainer.create({
    network: { kind: 'router', config: rc },
    optimizer: { learningRate: 1e-3 },
    seed: 0,
  });
  const rbytes = await r.save();
  await r.dispose();
  files.set('checkpoints/router.safetensors', rbytes);
  const manifest = {
    schema: MANIFEST_SCHEMA_ID,
    id: 'ens_synthetic',
    run: { id: 'bench', name: 'bench', objectives: 'ddpm:2,fm:2' },
    dataset: {
      id: 'bench',
      name: 'bench',
      count: 0,
      width: SIZE,
      height: SIZE,
      channels: 1,
      classNames: [],
      clusteringId: 'bench',
      sizes: [1, 1, 1, 1],
      classCounts: [],
    },
    model: { preset: 'micro', architecture: { kind: 'dit', ...config } },
    experts,
    router: {
      checkpoint: {
        uri: 'checkpoints/router.safetensors',
        key: 'r',
        sha256: await sha(rbytes),
        bytes: rbytes.byteLength,
      },
      architecture: { kind: 'router', ...rc },
      steps: 0,
      accuracy: { edges: [], accuracy: [], chance: 0, counts: [] },
    },
    inference: {
      routing: 'top-1',
      topK: 2,
      threshold: 0.1,
      conversion: 'snr',
      alphaMin: 0.01,
      x0Clamp: 20,
      sampler: 'euler',
      steps: STEPS,
      guidance: 1,
      rationale: '',
    },
    createdAt: new Date(0).toISOString(),
    signature: { alg: 'ed25519', keyId: '', publicKey: '', value: '' },
  };
  return { manifest, files, source: 'synthetic (demo shape, initial weights)' };
}

async function sha(bytes) {
  const { createHash } = await import('node:crypto');
  return createHash('sha256').update(bytes).digest('hex');
}

let loaded;
if (existsSync(manifestPath)) {
  const source = await openManifest(manifestPath);
  const files = await verifyEnsemble(source);
  loaded = { manifest: source.manifest, files, source: path.relative(root, manifestPath) };
} else {
  loaded = await syntheticEnsemble();
}
const ensemble = await LoadedEnsemble.load(loaded.manifest, async (f) => loaded.files.get(f.uri));
const K = loaded.manifest.experts.length;
const common = {
  batch: BATCH,
  steps: STEPS,
  sampler: 'euler',
  backend: backend.name,
  cores: os.cpus().length,
  ensemble: loaded.source,
  experts: K,
};
const emit = (r) => process.stdout.write(`${JSON.stringify({ ...r, ...common })}\n`);
const best = async (fn) => {
  await fn(); // warm-up: kernels, allocations
  let min = Infinity;
  for (let i = 0; i < REPEATS; i++) {
    const t0 = performance.now();
    await fn();
    min = Math.min(min, (performance.now() - t0) / 1000);
  }
  return min;
};

const { height, width, channels } = loaded.manifest.dataset;
const imageShape = [BATCH, height, width, channels];

// One expert alone (an FM expert: no conversion), the reference.
const fmExpert =
  loaded.manifest.experts.find((e) => e.objective === 'fm') ?? loaded.manifest.experts[0];
const { net } = networkFromCheckpoint(loaded.files.get(fmExpert.checkpoint.uri), {
  kind: 'expert',
});
const single = await best(async () => {
  const model = velocityExpert({ objective: 'fm', network: (x, t, y) => net.apply(x, t, y) });
  const xT = initialNoise(imageShape, 1);
  const x0 = euler(model, xT, timeGrid(STEPS));
  await x0.data();
  tf.dispose([xT, x0]);
});
emit({
  bench: 'sampling',
  name: 'sample_single_expert',
  routing: 'none',
  seconds: round(single),
  images_per_s: round(BATCH / single, 1),
});

const settings = (routing, k) => ({
  count: BATCH,
  steps: STEPS,
  seed: 1,
  sampler: 'euler',
  routing,
  k,
  tau: 0.1,
  conversion: 'snr',
  class: null,
  classes: null,
  guidance: 1,
});
let top1 = 0;
for (const [routing, k, label] of [
  ['top-k', 1, 'top-1'],
  ['top-k', 2, 'top-2'],
  ['full', K, 'full'],
]) {
  let evals = 0;
  const s = await best(async () => {
    const out = await ensemble.sample(settings(routing, k));
    evals = out.routing.meanExpertsPerSample;
  });
  if (label === 'top-1') top1 = s;
  emit({
    bench: 'sampling',
    name: `sample_ensemble_${label}`,
    routing: label,
    seconds: round(s),
    latency_ms_per_step: round((s * 1000) / STEPS, 1),
    images_per_s: round(BATCH / s, 1),
    experts_per_sample_step: evals,
    ratio_to_single_expert: round(s / single, 2),
  });
}

// The router alone over the same steps and batch: its share of a top-1 sampling step.
const routerNet = networkFromCheckpoint(loaded.files.get(loaded.manifest.router.checkpoint.uri), {
  kind: 'router',
}).net;
const routerSeconds = await best(async () => {
  const x = initialNoise(imageShape, 2);
  for (let i = 0; i < STEPS; i++) {
    const p = tf.tidy(() => tf.softmax(routerNet.apply(x, tf.fill([BATCH], 500))));
    await p.data();
    p.dispose();
  }
  x.dispose();
});
emit({
  bench: 'sampling',
  name: 'router_overhead',
  seconds: round(routerSeconds),
  share_of_top1_step: round(routerSeconds / top1, 3),
});
ensemble.dispose();
net.dispose();
routerNet.dispose();

function round(x, digits = 3) {
  return Number(x.toFixed(digits));
}
