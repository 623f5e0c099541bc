import type { TrainStepResult } from '@archipelago/models';
import { describe, expect, it } from 'vitest';
import {
  IDLE_RATES,
  type LoopTrainer,
  smoothRates,
  TrainingLoop,
  warmupLearningRate,
} from '../src/training-loop.js';

/** A trainer that counts steps and records the learning rate and batch of each. */
function fakeTrainer(start = 0) {
  const seen: { step: number; learningRate: number; batch: number }[] = [];
  let stepCount = start;
  const trainer = {
    get stepCount() {
      return stepCount;
    },
    threads: 1,
    learningRate: 0,
    async step(x: { data: Float32Array }): Promise<TrainStepResult> {
      seen.push({ step: stepCount, learningRate: trainer.learningRate, batch: x.data[0]! });
      stepCount++;
      return { loss: 1 / stepCount, imagesPerSec: 100, step: stepCount };
    },
    async save() {
      return new Uint8Array([stepCount]);
    },
    async dispose() {},
  };
  return { trainer: trainer as unknown as LoopTrainer, seen };
}

const batches = {
  batch: (step: number) => ({
    x: { data: new Float32Array([step]), shape: [1, 1, 1, 1] as [number, number, number, number] },
  }),
};

const training = {
  targetSteps: 7,
  checkpointInterval: 3,
  batchSize: 1,
  learningRate: 0.01,
  seed: 1,
};

function run(loop: TrainingLoop, stopAfter = Number.POSITIVE_INFINITY) {
  const events: string[] = [];
  let steps = 0;
  return loop
    .run({
      interrupted: () => steps >= stopAfter,
      onStep: () => {
        steps++;
        events.push(`step ${loop.step}`);
      },
      checkpoint: async (final) => {
        events.push(`checkpoint ${loop.step}${final ? ' final' : ''}`);
      },
      betweenSteps: async () => {
        events.push('between');
      },
    })
    .then(() => events);
}

describe('TrainingLoop', () => {
  it('checkpoints every interval and at the target, with the step’s batch and warmed-up rate', async () => {
    const { trainer, seen } = fakeTrainer();
    const loop = new TrainingLoop(trainer, batches, training, 'f'.repeat(64));
    const events = await run(loop);
    expect(events.filter((e) => e.startsWith('checkpoint'))).toEqual([
      'checkpoint 3',
      'checkpoint 6',
      'checkpoint 7 final',
    ]);
    expect(events.slice(0, 7)).toEqual([
      'step 1',
      'between',
      'step 2',
      'between',
      'step 3',
      'checkpoint 3',
      'between',
    ]);
    expect(seen.map((s) => s.batch)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(seen.map((s) => s.learningRate)).toEqual(
      seen.map((s) => warmupLearningRate(0.01, s.step, 7)),
    );
    expect(loop.step).toBe(7);
    expect(loop.rates.loss).toBeCloseTo(1 / 7);
    expect(await loop.save()).toEqual(new Uint8Array([7]));
  });

  it('continues a resumed step count, and stops after the current step when interrupted', async () => {
    const resumed = fakeTrainer(5);
    const events = await run(new TrainingLoop(resumed.trainer, batches, training, ''));
    expect(events.filter((e) => e.startsWith('checkpoint'))).toEqual([
      'checkpoint 6',
      'checkpoint 7 final',
    ]);
    expect(resumed.seen.map((s) => s.batch)).toEqual([5, 6]);

    const stopped = fakeTrainer();
    const loop = new TrainingLoop(stopped.trainer, batches, training, '');
    await run(loop, 2);
    expect(loop.step).toBe(2);

    const done = fakeTrainer(7);
    expect(await run(new TrainingLoop(done.trainer, batches, training, ''))).toEqual([]);
  });
});

describe('warmupLearningRate', () => {
  it('rises linearly over the first 10 % of the steps (at most 100), then holds', () => {
    expect(warmupLearningRate(1, 0, 100)).toBeCloseTo(0.1);
    expect(warmupLearningRate(1, 9, 100)).toBe(1);
    expect(warmupLearningRate(1, 49, 10_000)).toBe(0.5);
    expect(warmupLearningRate(1, 99, 10_000)).toBe(1);
    expect(warmupLearningRate(1, 0, 5)).toBe(1);
  });
});

describe('smoothRates', () => {
  it('starts at the first step’s rates, then follows with a moving average', () => {
    const first = smoothRates(IDLE_RATES, { loss: 0.5, imagesPerSec: 100 }, 0.5);
    expect(first).toEqual({ loss: 0.5, imagesPerSec: 100, stepsPerSec: 2 });
    const second = smoothRates(first, { loss: 0.4, imagesPerSec: 200 }, 0.25);
    expect(second.loss).toBe(0.4);
    expect(second.imagesPerSec).toBeCloseTo(110);
    expect(second.stepsPerSec).toBeCloseTo(2.2);
  });
});
