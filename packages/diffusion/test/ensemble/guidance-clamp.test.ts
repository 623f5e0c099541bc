/**
 * Classifier-free guidance comes before the DDPM conversion's x0 clamp, the same way whichever
 * sampler runs the model and whether the expert stands alone or in an ensemble (docs/method.md
 * §11). Real tensors: a class-conditional epsilon network (the ideal one of a 2-D mixture) whose
 * x0 estimates leave a tight clamp, guided at scale 3.
 */
import type { Tensor, Tensor1D } from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { type EpsToVelocityOptions, epsToVelocity } from '../../src/conversion/eps-to-velocity.js';
import { velocityToEpsNetwork } from '../../src/conversion/velocity-to-eps.js';
import { combineExperts } from '../../src/ensemble/combine.js';
import { withGuidance } from '../../src/ensemble/guidance.js';
import type { VelocityModel } from '../../src/model.js';
import { SAMPLER_NAMES, samplerEntry } from '../../src/samplers/registry.js';
import { initialNoise } from '../../src/samplers/sample.js';
import { createDdpmSchedule } from '../../src/schedules/ddpm-schedule.js';
import { fmStates, mixture2d } from '../fixtures.js';
import { maxAbsDiff, useCpuBackend } from '../helpers.js';

beforeAll(useCpuBackend);

const NULL = 3;
const SCALE = 3;
const B = 12;
const schedule = createDdpmSchedule({ kind: 'cosine' });
/** Label k: the ideal epsilon of component k; the null label: the mixture's. */
const epsNet = velocityToEpsNetwork(mixture2d.conditionalVelocity(NULL), schedule);
/** The mixture's means reach +-0.6: a clamp at +-0.4 binds on conditional and guided x0. */
const conversion: EpsToVelocityOptions = { mode: 'snr', x0Clamp: [-0.4, 0.4] };
const expert = epsToVelocity(epsNet, schedule, conversion);
const labels = () =>
  tf.tensor1d(
    Array.from({ length: B }, (_, i) => i % 3),
    'int32',
  ) as Tensor1D;

/** The definition: guide epsilon, then convert (and clamp) once. */
const guideThenClamp = epsToVelocity(withGuidance(epsNet, SCALE, NULL), schedule, conversion);
/** The old order: clamp each prediction, then guide the clamped velocities. */
const clampThenGuide: VelocityModel = (x, t, l) =>
  tf.tidy(() => {
    const cond = expert(x, t, l);
    const uncond = expert(x, t, tf.fill([x.shape[0]!], NULL, 'int32') as Tensor1D);
    return tf.add(uncond, tf.mul(tf.sub(cond, uncond), SCALE));
  });

function draw(model: VelocityModel, sampler: (typeof SAMPLER_NAMES)[number], seed = 5): Tensor {
  const entry = samplerEntry(sampler);
  const noise = initialNoise([B, 2], seed);
  const l = labels();
  const out = entry.sampler(model, noise, entry.grid(6), { labels: l, x0Clamp: [-1, 1] });
  tf.dispose([noise, l]);
  return out;
}

describe('guidance before the x0 clamp', () => {
  it('the two orders differ at a state where the clamp binds, and withGuidance guides first', () => {
    const { x, t } = fmStates(mixture2d, [0.3, 0.6, 0.9], 8, 17);
    const l = tf.tensor1d(
      Array.from({ length: 24 }, (_, i) => i % 3),
      'int32',
    ) as Tensor1D;
    const guided = withGuidance(expert, SCALE, NULL)(x, t, l);
    const first = guideThenClamp(x, t, l);
    const second = clampThenGuide(x, t, l);
    expect(maxAbsDiff(guided, first)).toBeLessThan(1e-4);
    expect(maxAbsDiff(first, second)).toBeGreaterThan(0.1);
    // The clamp binds on the guided estimate: without it the guided velocity is far off.
    const unclamped = withGuidance(expert.unclamped, SCALE, NULL)(x, t, l);
    expect(maxAbsDiff(unclamped, guided)).toBeGreaterThan(0.1);
  });

  for (const sampler of SAMPLER_NAMES) {
    it(`${sampler}: samples guide first, for one expert and for an ensemble`, () => {
      const alone = draw(withGuidance(expert, SCALE, NULL), sampler);
      const first = draw(guideThenClamp, sampler);
      const second = draw(clampThenGuide, sampler);
      expect(maxAbsDiff(alone, first)).toBeLessThan(1e-4);
      // DDIM clips its own x0 estimates to the data range, which narrows the gap.
      expect(maxAbsDiff(first, second)).toBeGreaterThan(0.01);
      // An ensemble of the DDPM expert and an FM expert, guided: each expert guided before its clamp.
      const fm = mixture2d.conditionalVelocity(NULL);
      const router = mixture2d.posterior();
      const ensemble = combineExperts([expert, fm, fm], router, { kind: 'full' }).model;
      const reference = combineExperts(
        [guideThenClamp, withGuidance(fm, SCALE, NULL), withGuidance(fm, SCALE, NULL)],
        router,
        { kind: 'full' },
      ).model;
      const guidedEnsemble = draw(withGuidance(ensemble, SCALE, NULL), sampler);
      expect(maxAbsDiff(guidedEnsemble, draw(reference, sampler))).toBeLessThan(1e-4);
      tf.dispose([alone, first, second, guidedEnsemble]);
    });
  }

  it('scale 1 changes nothing: the expert and the ensemble sample exactly as unguided', () => {
    const fm = mixture2d.conditionalVelocity(NULL);
    const router = mixture2d.posterior();
    for (const sampler of SAMPLER_NAMES) {
      expect(maxAbsDiff(draw(withGuidance(expert, 1, NULL), sampler), draw(expert, sampler))).toBe(
        0,
      );
      const { model } = combineExperts([expert, fm, fm], router, { kind: 'top-k', k: 2 });
      expect(maxAbsDiff(draw(withGuidance(model, 1, NULL), sampler), draw(model, sampler))).toBe(0);
    }
  });

  it('FM experts, which no clamp touches, guide as before: the guided combination', () => {
    const experts = [0, 1, 2].map((k) => mixture2d.componentVelocity(k));
    const fm = mixture2d.conditionalVelocity(NULL);
    const router = mixture2d.posterior();
    const { model } = combineExperts([fm, ...experts.slice(1)], router, { kind: 'full' });
    // The old path: guidance around the combined model, one doubled batch through the router.
    const opaque: VelocityModel = (x, t, l) => model(x, t, l);
    for (const sampler of SAMPLER_NAMES) {
      const now = draw(withGuidance(model, SCALE, NULL), sampler);
      const before = draw(withGuidance(opaque, SCALE, NULL), sampler);
      expect(maxAbsDiff(now, before)).toBeLessThan(1e-4);
      // And guidance did something.
      expect(maxAbsDiff(now, draw(model, sampler))).toBeGreaterThan(0.01);
    }
  });
});
