/**
 * Manifest v2 carries each expert's objective spec; v1 manifests, which carry a family, a
 * schedule and a time sampling instead, still load, verify and sample exactly as v2 does.
 */

import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { resolveObjective } from '@archipelago/diffusion';
import { ExpertTrainer, initBackend, RouterTrainer } from '@archipelago/models';
import {
  MANIFEST_V1_SCHEMA_ID,
  MANIFEST_V2_SCHEMA_ID,
  type ManifestBodyV1,
  type ManifestBodyV2,
  type ManifestFile,
  manifestExpertSpec,
} from '@archipelago/protocol';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadedEnsemble, type SampleSettings } from '../../src/ensembles/loaded-ensemble.js';
import { parseManifest, signManifest, verifyManifest } from '../../src/ensembles/manifest.js';
import { loadOrCreateSigningKey } from '../../src/ensembles/signing-key.js';

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
  { name: 'ddpm', schedule: { kind: 'linear', T: 1000, betaStart: 1e-4, betaEnd: 0.02 } },
  { name: 'fm', timeSampling: { kind: 'logit-normal', mean: 0, std: 1 } },
] as const;

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const file = (uri: string, bytes: Uint8Array): ManifestFile => ({
  uri,
  key: uri,
  sha256: sha(bytes),
  bytes: bytes.byteLength,
});

let dir: string;
const files = new Map<string, Uint8Array>();
let v2: ManifestBodyV2;

beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
  dir = await mkdtemp(path.join(tmpdir(), 'arch-manifest-versions-'));
  const x = tf.randomUniform([4, 8, 8, 1], -1, 1, 'float32', 3);
  const experts: ManifestBodyV2['experts'] = [];
  for (const [cluster, spec] of SPECS.entries()) {
    const trainer = await ExpertTrainer.create({
      network: { kind: 'dit', config: DIT },
      objective: spec,
      optimizer: { learningRate: 1e-3 },
      seed: cluster,
    });
    await trainer.step(x);
    const bytes = await trainer.save();
    await trainer.dispose();
    const f = file(`checkpoints/expert-${cluster}.safetensors`, bytes);
    files.set(f.uri, bytes);
    experts.push({
      cluster,
      objective: spec.name,
      spec,
      checkpoint: f,
      steps: 1,
      trainImages: 4,
      validationLoss: 0.5,
      baselineLoss: 1,
    });
  }
  const routerConfig = { ...DIT, numClusters: 2 } as Record<string, unknown>;
  delete routerConfig.numClasses;
  delete routerConfig.learnSigma;
  const router = await RouterTrainer.create({
    network: { kind: 'router', config: routerConfig as never },
    optimizer: { learningRate: 1e-3 },
    seed: 7,
  });
  const routerBytes = await router.save();
  await router.dispose();
  const r = file('checkpoints/router.safetensors', routerBytes);
  files.set(r.uri, routerBytes);
  x.dispose();
  v2 = {
    schema: MANIFEST_V2_SCHEMA_ID,
    run: { id: 'run_abc123', name: 'r', objectives: 'ddpm:1,fm:1' },
    dataset: {
      id: 'ds_abc123',
      name: 'd',
      count: 8,
      width: 8,
      height: 8,
      channels: 1,
      classNames: ['a', 'b'],
      clusteringId: 'cl_abc123',
      sizes: [4, 4],
      classCounts: [
        [3, 1],
        [1, 3],
      ],
    },
    model: { preset: 'tiny', architecture: { kind: 'dit', ...DIT } },
    experts,
    router: {
      checkpoint: r,
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
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** The same ensemble as manifest v1: family, schedule kind and time sampling kind per expert. */
function asV1(body: ManifestBodyV2): ManifestBodyV1 {
  return {
    ...body,
    schema: MANIFEST_V1_SCHEMA_ID,
    experts: body.experts.map(({ spec, ...e }) => {
      const s = spec as {
        schedule?: { kind: 'cosine' | 'linear' };
        timeSampling?: { kind: 'uniform' | 'logit-normal' };
      };
      return {
        ...e,
        schedule: s.schedule?.kind ?? null,
        ...(s.timeSampling ? { timeSampling: s.timeSampling.kind } : {}),
      };
    }),
  };
}

const SETTINGS: SampleSettings = {
  count: 3,
  steps: 4,
  seed: 5,
  sampler: 'heun',
  routing: 'full',
  k: 2,
  tau: 0.1,
  conversion: 'snr',
  class: null,
  classes: null,
  guidance: 1,
};

describe('manifest versions', () => {
  it('v2 and v1 both parse, verify and sample the same pixels; v1 experts read as their specs', async () => {
    const key = loadOrCreateSigningKey(dir);
    const outputs: Uint8Array[] = [];
    for (const body of [v2, asV1(v2)]) {
      const manifest = parseManifest(JSON.stringify(signManifest(body, key)));
      verifyManifest(manifest, { trustedKeys: [key.publicKeyRaw] });
      // v1 entries stand for their specs with the registry's defaults filled in.
      expect(manifest.experts.map((e) => resolveObjective(manifestExpertSpec(e)))).toEqual(SPECS);
      const ensemble = await LoadedEnsemble.load(manifest, async (f) => files.get(f.uri)!);
      try {
        outputs.push((await ensemble.sample(SETTINGS)).pixels);
      } finally {
        ensemble.dispose();
      }
    }
    expect(outputs[0]!.length).toBe(3 * 8 * 8);
    expect(Buffer.from(outputs[1]!).equals(Buffer.from(outputs[0]!))).toBe(true);
  });

  it('a v2 expert whose spec is not a valid objective spec is refused at parse time', () => {
    const key = loadOrCreateSigningKey(dir);
    const bad = structuredClone(v2);
    (bad.experts[0] as { spec: unknown }).spec = { name: 'ddpm', prediction: 'x0' };
    expect(() => parseManifest(JSON.stringify(signManifest(bad as never, key)))).toThrow(
      /not an ensemble manifest v1 or v2/,
    );
  });
});
