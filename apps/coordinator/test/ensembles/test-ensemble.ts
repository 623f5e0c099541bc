/**
 * A small signed ensemble for tests that sample: two untrained DiT experts (DDPM and FM) and a
 * router, with their checkpoint bytes; and publishing it into a coordinator's database and store
 * as the publish job would (the run it belongs to is a bare row).
 */
import { createHash } from 'node:crypto';
import { ExpertTrainer, RouterTrainer } from '@archipelago/models';
import {
  type EnsembleManifest,
  MANIFEST_V2_SCHEMA_ID,
  type ManifestBodyV2,
  type ManifestFile,
} from '@archipelago/protocol';
import type { Coordinator } from '../../src/coordinator.js';
import { datasets, ensembles } from '../../src/db/schema/index.js';
import { signManifest } from '../../src/ensembles/manifest.js';
import type { SigningKey } from '../../src/ensembles/signing-key.js';
import { newId } from '../../src/ids.js';
import { manifestKey } from '../../src/services/ensembles.js';
import { createRun } from '../../src/services/runs.js';

const DIT = {
  imageSize: 8,
  channels: 1,
  patchSize: 2,
  hidden: 32,
  depth: 1,
  heads: 2,
  mlpRatio: 2,
  numClasses: 2,
  learnSigma: false,
};
const SPECS = [
  { name: 'ddpm', schedule: { kind: 'cosine' } },
  { name: 'fm', timeSampling: { kind: 'uniform' } },
] as const;

export interface TestEnsemble {
  manifest: EnsembleManifest;
  /** The manifest as published (JSON text). */
  text: string;
  /** Checkpoint bytes by the manifest's `uri` (`checkpoints/...`). */
  files: Map<string, Uint8Array>;
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** What a test may change: the image size and the dataset (default 8x8, "d", classes a, b). */
export interface TestEnsembleShape {
  imageSize?: number;
  datasetName?: string;
  classNames?: string[];
  /**
   * A router trained with the class (two classes), taught that class c belongs to cluster 1 - c:
   * the opposite of what `classCounts` lean to, so a test can tell which rule routed a sample.
   */
  classRouter?: boolean;
}

/**
 * A class-conditional router of `config` trained (60 steps) on images that say nothing of their
 * cluster, with cluster = 1 - class and every 10th row's class dropped to the null class.
 */
async function trainedClassRouter(config: Record<string, unknown>): Promise<Uint8Array> {
  const size = Number(config.imageSize);
  const router = await RouterTrainer.create({
    network: { kind: 'router', config: { ...config, numClasses: 2 } as never },
    optimizer: { learningRate: 1e-2 },
    seed: 7,
  });
  let state = 99;
  const next = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
  for (let step = 0; step < 60; step++) {
    const rows = 32;
    const data = new Float32Array(rows * size * size).map(() => 2 * next() - 1);
    const labels = Int32Array.from({ length: rows }, () => (next() < 0.5 ? 0 : 1));
    const clusters = labels.map((c) => 1 - c);
    const dropped = labels.map((c, r) => (r % 10 === 0 ? 2 : c));
    await router.step({ data, shape: [rows, size, size, 1] }, clusters, { labels: dropped });
  }
  const bytes = await router.save();
  await router.dispose();
  return bytes;
}

/** Build and sign the ensemble (a TensorFlow.js backend must be initialised). */
export async function buildTestEnsemble(
  key: SigningKey,
  run = { id: 'run_test', name: 'test', objectives: 'ddpm:1,fm:1' },
  shape: TestEnsembleShape = {},
): Promise<TestEnsemble> {
  const classNames = shape.classNames ?? ['a', 'b'];
  const dit = {
    ...DIT,
    imageSize: shape.imageSize ?? DIT.imageSize,
    numClasses: classNames.length,
  };
  const files = new Map<string, Uint8Array>();
  const file = (uri: string, bytes: Uint8Array): ManifestFile => {
    files.set(uri, bytes);
    return {
      uri,
      key: `test-ensembles/${sha(bytes)}/${uri}`,
      sha256: sha(bytes),
      bytes: bytes.length,
    };
  };
  const experts: ManifestBodyV2['experts'] = [];
  for (const [cluster, spec] of SPECS.entries()) {
    const trainer = await ExpertTrainer.create({
      network: { kind: 'dit', config: dit },
      objective: spec,
      optimizer: { learningRate: 1e-3 },
      seed: cluster,
    });
    const bytes = await trainer.save();
    await trainer.dispose();
    experts.push({
      cluster,
      objective: spec.name,
      spec,
      checkpoint: file(`checkpoints/expert-${cluster}.safetensors`, bytes),
      steps: 0,
      trainImages: 0,
      validationLoss: 0.5,
      baselineLoss: 1,
    });
  }
  const { numClasses: _c, learnSigma: _s, ...plainRouter } = { ...dit, numClusters: 2 };
  const routerConfig = shape.classRouter ? { ...plainRouter, numClasses: 2 } : plainRouter;
  let routerBytes: Uint8Array;
  if (shape.classRouter) routerBytes = await trainedClassRouter(plainRouter);
  else {
    const router = await RouterTrainer.create({
      network: { kind: 'router', config: routerConfig as never },
      optimizer: { learningRate: 1e-3 },
      seed: 7,
    });
    routerBytes = await router.save();
    await router.dispose();
  }
  const body: ManifestBodyV2 = {
    schema: MANIFEST_V2_SCHEMA_ID,
    run,
    dataset: {
      id: 'ds_test',
      name: shape.datasetName ?? 'd',
      count: 8,
      width: dit.imageSize,
      height: dit.imageSize,
      channels: 1,
      classNames,
      clusteringId: 'cl_test',
      sizes: [4, 4],
      // p(c | k): cluster 0 leans to the first half of the classes, cluster 1 to the second.
      classCounts: [0, 1].map((k) =>
        classNames.map((_, c) => (Math.floor((2 * c) / classNames.length) === k ? 3 : 1)),
      ),
    },
    model: { preset: 'tiny', architecture: { kind: 'dit', ...dit } },
    experts,
    router: {
      checkpoint: file('checkpoints/router.safetensors', routerBytes),
      architecture: { kind: 'router', ...routerConfig },
      steps: 0,
      accuracy: { edges: [0, 1], accuracy: [0.5], chance: 0.5, counts: [4] },
    },
    inference: {
      routing: 'full',
      topK: 2,
      threshold: 0.1,
      conversion: 'snr',
      alphaMin: 0.01,
      x0Clamp: 1,
      sampler: 'euler',
      steps: 4,
      guidance: 1,
      rationale: 'test',
    },
    createdAt: '2026-12-02T00:00:00.000Z',
  };
  const manifest = signManifest(body, key);
  return { manifest, text: JSON.stringify(manifest), files };
}

/** Build the ensemble with the coordinator's key and publish it there; its manifest. */
export async function publishTestEnsemble(
  c: Coordinator,
  shape: TestEnsembleShape = {},
): Promise<EnsembleManifest> {
  const datasetId = newId('dataset');
  c.db
    .insert(datasets)
    .values({
      id: datasetId,
      name: 'tiny',
      source: { kind: 'builtin', name: 'mnist' },
      count: 8,
      height: 8,
      width: 8,
      channels: 1,
      classNames: ['a', 'b'],
      imagesKey: `datasets/${datasetId}/images.bin`,
      bytes: 512,
      sha256: '0'.repeat(64),
      featureKind: 'pca',
      featureDim: 2,
      featuresKey: `datasets/${datasetId}/features.npy`,
      importMs: 1,
    })
    .run();
  const run = createRun(
    { db: c.db, jobs: { dispatch: () => {} } },
    { datasetId, experts: 2, stepsPerExpert: 10 },
  );
  const { manifest, text, files } = await buildTestEnsemble(
    c.signingKey,
    { id: run.id, name: run.name, objectives: 'ddpm:1,fm:1' },
    shape,
  );
  for (const f of [...manifest.experts.map((e) => e.checkpoint), manifest.router.checkpoint])
    await c.store.put(f.key, Buffer.from(files.get(f.uri)!));
  const stored = await c.store.put(manifestKey(manifest.id), Buffer.from(text));
  c.db
    .insert(ensembles)
    .values({
      id: manifest.id,
      runId: run.id,
      manifestKey: manifestKey(manifest.id),
      manifestSha256: stored.sha256 ?? '',
      routerKey: manifest.router.checkpoint.key,
      routerSha256: manifest.router.checkpoint.sha256,
      signature: manifest.signature.value,
      keyId: manifest.signature.keyId,
      defaults: manifest.inference,
    })
    .run();
  return manifest;
}
