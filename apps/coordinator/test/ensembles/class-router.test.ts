/**
 * Sampling with a router trained with the class (docs/method.md §5): the ensemble routes a
 * class-conditional sample by p(k | x_t, c) from the router itself, not by the product rule. The
 * test ensemble's router was taught class c -> cluster 1 - c while its `classCounts` lean class c
 * to cluster c, so the two rules send each sample to opposite experts; an older, unconditional
 * router in the same ensemble still routes by the product rule.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { initBackend } from '@archipelago/models';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadedEnsemble, type SampleSettings } from '../../src/ensembles/loaded-ensemble.js';
import { loadOrCreateSigningKey } from '../../src/ensembles/signing-key.js';
import { buildTestEnsemble, type TestEnsemble } from './test-ensemble.js';

const SETTINGS: SampleSettings = {
  count: 4,
  steps: 3,
  seed: 5,
  sampler: 'euler',
  routing: 'top-k',
  k: 1,
  tau: 0.1,
  conversion: 'snr',
  class: null,
  classes: [0, 0, 1, 1],
  guidance: 1,
};

async function load(e: TestEnsemble): Promise<LoadedEnsemble> {
  return LoadedEnsemble.load(e.manifest, async (file) => e.files.get(file.uri)!);
}

/** The expert each sample was routed to at every step (top-1: exactly one). */
function routedTo(out: Awaited<ReturnType<LoadedEnsemble['sample']>>): number[] {
  return out.perSample.map((s) => {
    expect(s.evaluations.reduce((a, b) => a + b, 0)).toBe(SETTINGS.steps);
    expect(s.evaluations.filter((n) => n > 0)).toHaveLength(1);
    return s.evaluations.findIndex((n) => n > 0);
  });
}

describe('class-conditional routing with a router trained with the class', () => {
  let dir: string;
  let withClass: TestEnsemble;
  let plain: TestEnsemble;
  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
    dir = await mkdtemp(path.join(os.tmpdir(), 'class-router-'));
    const key = loadOrCreateSigningKey(path.join(dir, 'key'));
    withClass = await buildTestEnsemble(key, undefined, { classRouter: true });
    plain = await buildTestEnsemble(key);
  }, 60_000);
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('routes each sample by the router given its class, not by p(c | k)', async () => {
    expect(withClass.manifest.router.architecture).toMatchObject({ numClasses: 2 });
    const ensemble = await load(withClass);
    try {
      expect(ensemble.routerClasses).toBe(2);
      expect(routedTo(await ensemble.sample(SETTINGS))).toEqual([1, 1, 0, 0]);
      // Guided: the same routing (the router sees the conditional rows' classes).
      expect(routedTo(await ensemble.sample({ ...SETTINGS, guidance: 2 }))).toEqual([1, 1, 0, 0]);
    } finally {
      ensemble.dispose();
    }
  });

  it('an unconditional router in the same ensemble still routes by the product rule', async () => {
    expect(plain.manifest.router.architecture).not.toHaveProperty('numClasses');
    const ensemble = await load(plain);
    try {
      expect(ensemble.routerClasses).toBe(0);
      // Untrained (uniform) router: p(c | k) decides, class c to cluster c.
      expect(routedTo(await ensemble.sample(SETTINGS))).toEqual([0, 0, 1, 1]);
    } finally {
      ensemble.dispose();
    }
  });
});
