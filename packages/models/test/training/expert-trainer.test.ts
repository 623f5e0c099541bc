import {
  createDdpmSchedule,
  createObjective,
  ddim,
  ddimSteps,
  euler,
  heun,
  initialNoise,
  type ObjectiveConfig,
  timeGrid,
  velocityExpert,
} from '@archipelago/diffusion';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import { convertDdpmToFm, loadCheckpoint } from '../../src/checkpoint/index.js';
import { ExpertTrainer } from '../../src/training/index.js';
import { learningRateAt, MEANS, MIXTURE, nearModes, sampleMixture } from './helpers.js';

const MLP = { kind: 'mlp', config: { dim: 2, hidden: 64, depth: 2 } } as const;
const OBJECTIVES: Record<'fm' | 'ddpm', ObjectiveConfig> = {
  fm: { name: 'fm', timeSampling: { kind: 'uniform' } },
  ddpm: { name: 'ddpm', schedule: { kind: 'cosine' } },
};
await initBackend({ backend: 'wasm' });

const STEPS = 400;
const BATCH = 256;
const LR = 1e-2;
/** Held-out set and the seed of its noise: every loss below is measured on the same noised batch. */
const HELD_OUT = sampleMixture(4096, 99).x;
const EVAL_SEED = 5;

/** The objective's loss of the closed-form optimal predictor on the held-out noised batch. */
function idealLoss(config: ObjectiveConfig): number {
  return tf.tidy(() => {
    const objective = createObjective(config);
    const x0 = tf.tensor(HELD_OUT.data, HELD_OUT.shape);
    const { xt, tau, target } = objective.sampleTraining(x0, EVAL_SEED);
    const pred =
      config.name === 'fm'
        ? MIXTURE.idealVelocity()(xt, tf.div(tau, 999))
        : MIXTURE.idealEpsilon(createDdpmSchedule(config.schedule!))(xt, tau);
    return objective.loss(pred, target).dataSync()[0]!;
  });
}

describe('MLP experts on a 2-D Gaussian mixture (3 modes, 14 sigma apart)', () => {
  const runs = {} as Record<
    'fm' | 'ddpm',
    { trainer: ExpertTrainer; initial: number; final: number; ideal: number }
  >;

  beforeAll(async () => {
    for (const name of ['fm', 'ddpm'] as const) {
      const trainer = await ExpertTrainer.create({
        network: MLP,
        objective: OBJECTIVES[name],
        optimizer: { learningRate: LR },
        seed: 1,
      });
      const initial = trainer.evalLoss(HELD_OUT, EVAL_SEED);
      for (let i = 0; i < STEPS; i++) {
        trainer.learningRate = learningRateAt(LR, i, STEPS);
        await trainer.step(sampleMixture(BATCH, 1000 + 2 * i).x);
      }
      const final = trainer.evalLoss(HELD_OUT, EVAL_SEED);
      runs[name] = { trainer, initial, final, ideal: idealLoss(OBJECTIVES[name]) };
      console.info(`${name}: held-out loss ${initial} -> ${final}, optimum ${runs[name].ideal}`);
    }
  }, 120_000);

  afterAll(async () => {
    for (const run of Object.values(runs)) await run.trainer.dispose();
  });

  // Measured (seed 1, 400 steps): fm 1.347 -> 0.690 (optimum 0.686); ddpm 1.008 -> 0.235
  // (optimum 0.228).
  // The zero predictor's FM loss is only twice the optimum on this data (the velocity e - x0 is
  // unpredictable from x_t near t = 0), so "below half the initial loss" cannot hold for FM;
  // the test asks instead that training closes 80% of the gap to the closed-form optimum.
  it.each(['fm', 'ddpm'] as const)(
    '%s: the held-out loss falls most of the way to the closed-form optimum',
    (name) => {
      const { trainer, initial, final, ideal } = runs[name];
      expect(trainer.stepCount).toBe(STEPS);
      expect(final - ideal).toBeLessThan(0.2 * (initial - ideal));
      expect(final).toBeGreaterThan(ideal - 0.02); // nothing beats the optimum (up to sampling noise)
      expect(final / initial).toBeLessThan(name === 'fm' ? 0.6 : 0.5);
    },
  );

  // Measured: 0.942 (fm) and 0.902 (ddpm) of the samples within 3 sigma (0.90-0.95 over seeds
  // 1-4 while tuning); the closed-form velocity gives 1.0 with the same sampler and noise.
  it.each(['fm', 'ddpm'] as const)(
    '%s: 30 Heun steps of 500 samples land within 3 sigma of a mode (more than 0.8 of them)',
    (name) => {
      const { trainer } = runs[name];
      const objective = OBJECTIVES[name];
      const velocity = velocityExpert(
        objective.name === 'fm'
          ? { objective: 'fm', network: trainer.network() }
          : { objective: 'ddpm', network: trainer.network(), schedule: objective.schedule },
      );
      const noise = initialNoise([500, 2], 7);
      const samples = heun(velocity, noise, timeGrid(30));
      const near = nearModes(samples);
      console.info(`${name}: ${near} of 500 Heun samples within 3 sigma of a mode`);
      expect(near).toBeGreaterThan(0.8);
      tf.dispose([noise, samples]);
    },
  );

  // Measured: DDIM without clipping x0 puts only 0.144 in distribution (the first step divides
  // the network's error by sqrt(abar_999) of the cosine schedule); clipped to [-1, 1]: 0.896,
  // the same as through the conversion (0.898, whose x0 estimate is clamped and alpha floored).
  it('ddpm: the same expert sampled natively (30 DDIM steps, x0 clipped to the data range) and through the conversion (30 Euler steps) both land in distribution', () => {
    const { trainer } = runs.ddpm;
    const schedule = createDdpmSchedule({ kind: 'cosine' });
    const noise = initialNoise([500, 2], 11);
    const native = ddim(trainer.network(), schedule, noise, ddimSteps(30, schedule.T), {
      x0Clamp: [-1, 1],
    });
    const converted = euler(
      velocityExpert({ objective: 'ddpm', network: trainer.network(), schedule }),
      noise,
      timeGrid(30),
    );
    const nearNative = nearModes(native);
    const nearConverted = nearModes(converted);
    console.info(
      `ddpm: ${nearNative} (DDIM) and ${nearConverted} (converted, Euler) of 500 within 3 sigma`,
    );
    expect(nearNative).toBeGreaterThan(0.8);
    expect(nearConverted).toBeGreaterThan(0.8);
    // Both found all three modes, in roughly equal shares (the mixture's weights are equal).
    for (const x of [native, converted]) {
      const counts = [0, 0, 0];
      const data = x.dataSync();
      for (let i = 0; i < 500; i++) {
        const d = MEANS.map(
          ([mx, my]) => (data[2 * i]! - mx!) ** 2 + (data[2 * i + 1]! - my!) ** 2,
        );
        counts[d.indexOf(Math.min(...d))]! += 1;
      }
      for (const c of counts) expect(c).toBeGreaterThan(500 / 3 / 2);
    }
    tf.dispose([noise, native, converted]);
  });

  // Held-out FM loss at steps 0..20, measured (lr 1e-2, the same batches and seed for both):
  //   converted: 1.347 1.257 1.085 0.898 0.868 0.911 0.855 0.809 0.824 0.818 0.830
  //              0.820 0.806 0.782 0.765 0.782 0.781 0.773 0.788 0.783 0.758
  //   scratch:   1.347 1.340 1.321 1.281 1.214 1.128 1.049 1.116 1.025 1.046 1.031
  //              1.035 1.040 1.022 0.998 0.999 1.014 0.970 0.968 0.980 0.989
  // The converted expert reaches scratch's 20-step loss (0.989) at step 3.
  it('FM from the converted DDPM expert learns faster than FM from scratch (docs/method.md section 7)', async () => {
    const init = await convertDdpmToFm(await runs.ddpm.trainer.save());
    const curves: Record<string, number[]> = {};
    for (const [name, from] of [
      ['converted', { init }],
      ['scratch', {}],
    ] as const) {
      const trainer = await ExpertTrainer.create({
        network: MLP,
        objective: OBJECTIVES.fm,
        optimizer: { learningRate: LR },
        seed: 2,
        ...from,
      });
      const curve = [trainer.evalLoss(HELD_OUT, EVAL_SEED)];
      for (let i = 0; i < 20; i++) {
        await trainer.step(sampleMixture(BATCH, 5000 + 2 * i).x);
        curve.push(trainer.evalLoss(HELD_OUT, EVAL_SEED));
      }
      curves[name] = curve;
      await trainer.dispose();
    }
    const { converted, scratch } = curves as { converted: number[]; scratch: number[] };
    console.info(JSON.stringify({ converted, scratch }));
    // Step 0: both output projections are zero, so both predict 0: the same loss.
    expect(converted[0]).toBe(scratch[0]);
    for (let k = 1; k <= 20; k++) expect(converted[k], `step ${k}`).toBeLessThan(scratch[k]!);
    // Steps to reach the loss scratch training has after 20 steps.
    const reach = converted.findIndex((l) => l <= scratch[20]!);
    expect(reach).toBeGreaterThan(0);
    expect(reach).toBeLessThan(10);
  }, 60_000);
});

describe('ExpertTrainer with an EMA of the weights', () => {
  it('saves the average, with the warmed-up decay min(decay, (1 + t) / (10 + t)) at step t', async () => {
    const make = (ema?: { decay: number }) =>
      ExpertTrainer.create({
        network: MLP,
        objective: OBJECTIVES.fm,
        optimizer: { learningRate: 1e-2 },
        seed: 4,
        ...(ema ? { ema } : {}),
      });
    const plain = await make();
    const averaged = await make({ decay: 0.999 });
    const snap = (t: ExpertTrainer) =>
      new Map([...t.getParams()].map(([k, v]) => [k, Float32Array.from(v.dataSync())]));
    // Same seed, same batches: the live weights of both trainers follow the same trajectory.
    const expected = snap(plain);
    for (let step = 1; step <= 3; step++) {
      const batch = sampleMixture(32, 50 + step).x;
      await plain.step(batch);
      await averaged.step(batch);
      const d = Math.min(0.999, (1 + step) / (10 + step));
      for (const [k, v] of snap(plain)) {
        const e = expected.get(k)!;
        for (let i = 0; i < e.length; i++) e[i] = d * e[i]! + (1 - d) * v[i]!;
      }
    }
    const saved = loadCheckpoint(await averaged.save());
    for (const [k, e] of expected) {
      const got = saved.params[k]!.data;
      let max = 0;
      for (let i = 0; i < e.length; i++) max = Math.max(max, Math.abs(got[i]! - e[i]!));
      expect(max, k).toBeLessThan(1e-6);
    }
    // Without an EMA a checkpoint holds the live weights, which have moved away from the average.
    const live = loadCheckpoint(await plain.save());
    const [name] = expected.keys();
    expect(Array.from(live.params[name!]!.data)).not.toEqual(Array.from(saved.params[name!]!.data));
    await expect(make({ decay: 1 })).rejects.toThrow(/ema decay must be in \(0, 1\)/);
    await plain.dispose();
    await averaged.dispose();
  });
});
