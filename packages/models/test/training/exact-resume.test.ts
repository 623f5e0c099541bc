/**
 * Exact resume: `train k steps, save checkpoint + optimiser state, a new trainer from both, train
 * n - k steps` ends with the weights of `train n steps` (a real DiT trainer with EMA, in one thread
 * and data-parallel over two), and the optimiser state file refuses what does not continue its
 * checkpoint.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend.js';
import {
  CheckpointError,
  checkpointSha256,
  encodeOptimizerState,
  inspectOptimizerState,
  loadCheckpoint,
  loadOptimizerState,
  optimizerStateShapes,
  optimizerStateSizeBounds,
} from '../../src/checkpoint/index.js';
import type { DiTConfig } from '../../src/nn/index.js';
import {
  ExpertTrainer,
  type ExpertTrainerOptions,
  paramShapesOf,
} from '../../src/training/index.js';
import { maxAbsDiff, snapshot } from './helpers.js';

await initBackend({ backend: 'wasm' });

const DIT: DiTConfig = {
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
const SPEC = { kind: 'dit', config: DIT } as const;
const OPTIONS: ExpertTrainerOptions = {
  network: SPEC,
  objective: { name: 'fm', timeSampling: { kind: 'logit-normal' } },
  optimizer: { learningRate: 3e-3, weightDecay: 0.01, gradClip: 1 },
  ema: { decay: 0.99 },
  seed: 11,
};
const STEPS = 12;
const CUT = 5;
const CREATED = '2024-01-01T00:00:00.000Z';

function batch(i: number): { x: Float32Array; labels: Int32Array } {
  const x = tf.tidy(() =>
    tf.randomUniform([6, 8, 8, 1], -1, 1, 'float32', 500 + i).dataSync(),
  ) as Float32Array;
  return { x: x.slice(), labels: Int32Array.from([0, 1, 2, i % 2, 1, 0]) };
}

async function train(trainer: ExpertTrainer, until: number): Promise<void> {
  while (trainer.stepCount < until) {
    const b = batch(trainer.stepCount);
    trainer.learningRate = 3e-3 * Math.min(1, (trainer.stepCount + 1) / 4);
    await trainer.step({ data: b.x, shape: [6, 8, 8, 1] }, b.labels);
  }
}

/** What a run ends with: the checkpoint's weights (the EMA) and the live weights. */
async function finish(trainer: ExpertTrainer) {
  const saved = snapshot(trainer.savedParams());
  const live = snapshot(trainer.getParams());
  await trainer.dispose();
  return { saved, live };
}

describe('exact resume with the optimiser state', () => {
  for (const threads of [1, 2]) {
    it(`${threads} thread(s): ${CUT} steps, saved, resumed, ${STEPS - CUT} more = ${STEPS} straight`, async () => {
      const straight = await ExpertTrainer.create({ ...OPTIONS, threads });
      await train(straight, STEPS);
      const want = await finish(straight);

      const first = await ExpertTrainer.create({ ...OPTIONS, threads });
      await train(first, CUT);
      const saved = await first.saveResumable({ createdAt: CREATED });
      await first.dispose();
      expect(saved.sha256).toBe(checkpointSha256(saved.checkpoint));

      const resumed = await ExpertTrainer.create({
        ...OPTIONS,
        threads,
        init: saved.checkpoint,
        optimizerState: saved.optimizer,
      });
      expect(resumed.stepCount).toBe(CUT);
      await train(resumed, STEPS);
      const got = await finish(resumed);
      expect(maxAbsDiff(got.saved, want.saved)).toBeLessThanOrEqual(1e-6);
      expect(maxAbsDiff(got.live, want.live)).toBeLessThanOrEqual(1e-6);

      // Without the state (fresh moments from the EMA weights) the run ends elsewhere.
      const warm = await ExpertTrainer.create({ ...OPTIONS, threads, init: saved.checkpoint });
      await train(warm, STEPS);
      const restarted = await finish(warm);
      expect(maxAbsDiff(restarted.saved, want.saved)).toBeGreaterThan(1e-4);
      // Three trainers of 12 steps each (worker threads with 2): seconds on a busy 2-core machine.
    }, 120_000);
  }

  it('the state file: 3x the tensor bytes plus a header, names its checkpoint, holds Adam t', async () => {
    const trainer = await ExpertTrainer.create(OPTIONS);
    await train(trainer, 3);
    const saved = await trainer.saveResumable({ createdAt: CREATED });
    await trainer.dispose();
    const shapes = paramShapesOf(SPEC);
    const bounds = optimizerStateSizeBounds(shapes);
    expect(bounds.tensorBytes).toBe(
      3 * Object.values(shapes).reduce((n, s) => n + s.reduce((a, b) => a * b, 1) * 4, 0),
    );
    expect(saved.optimizer.length).toBeGreaterThanOrEqual(bounds.minBytes);
    expect(saved.optimizer.length).toBeLessThanOrEqual(bounds.maxBytes);
    const { meta } = inspectOptimizerState(saved.optimizer, saved.optimizer.length, shapes);
    expect(meta).toEqual({
      format: 'archipelago.optimizer-state',
      version: 1,
      checkpoint: saved.sha256,
      step: 3,
      adamStep: 3,
    });
    const state = loadOptimizerState(saved.optimizer, shapes);
    // The checkpoint holds the EMA, the state the live weights: they differ after 3 steps.
    const ckpt = loadCheckpoint(saved.checkpoint).params;
    const name = 'final_layer.linear.weight';
    expect(state.params[name]).toBeDefined();
    expect(state.params[name]!.data).not.toEqual(ckpt[name]!.data);
    // The fixed positional embedding is not trained: zero moments.
    expect(state.expAvg.pos_embed!.data.every((v) => v === 0)).toBe(true);
    expect(state.expAvgSq[name]!.data.some((v) => v > 0)).toBe(true);
  }, 60_000);

  it('refuses a state of another checkpoint or step, damaged values, or another shape', async () => {
    const trainer = await ExpertTrainer.create(OPTIONS);
    await train(trainer, 2);
    const a = await trainer.saveResumable({ createdAt: CREATED });
    await train(trainer, 4);
    const b = await trainer.saveResumable({ createdAt: CREATED });
    await trainer.dispose();
    const shapes = paramShapesOf(SPEC);
    const refused = async (
      code: string,
      init: Uint8Array,
      optimizerState: Uint8Array,
    ): Promise<void> => {
      const err = await ExpertTrainer.create({ ...OPTIONS, init, optimizerState }).then(
        async (t) => {
          await t.dispose();
          return null;
        },
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(CheckpointError);
      expect((err as CheckpointError).code).toBe(code);
    };
    // Another checkpoint's state (step 4's with step 2's checkpoint).
    await refused('config_mismatch', a.checkpoint, b.optimizer);
    const state = loadOptimizerState(a.optimizer, shapes);
    const rewrite = (change: (s: typeof state) => void, meta = state.meta) => {
      const copy = loadOptimizerState(a.optimizer, shapes);
      change(copy);
      const { format: _f, version: _v, ...rest } = meta;
      return encodeOptimizerState(rest, copy);
    };
    // The right sha256 but another step.
    await refused(
      'config_mismatch',
      a.checkpoint,
      rewrite(() => {}, { ...state.meta, step: 4, adamStep: 4 }),
    );
    // Values a writer refuses are refused by the reader too: patch the bytes after encoding.
    const patched = (prefix: string, value: number) => {
      const bytes = a.optimizer.slice();
      const { header } = inspectOptimizerState(bytes, bytes.length, shapes);
      const e = header.entries.find((x) => x.name === `${prefix}final_layer.linear.weight`)!;
      new DataView(bytes.buffer).setFloat32(header.dataStart + e.begin, value, true);
      return bytes;
    };
    await refused('non_finite', a.checkpoint, patched('exp_avg/', Number.NaN));
    await refused('non_finite', a.checkpoint, patched('param/', Number.POSITIVE_INFINITY));
    await refused('invalid_tensor', a.checkpoint, patched('exp_avg_sq/', -1));
    // A state of another architecture.
    const other = paramShapesOf({ kind: 'dit', config: { ...DIT, hidden: 64 } });
    expect(() => inspectOptimizerState(a.optimizer, a.optimizer.length, other)).toThrow(
      CheckpointError,
    );
    expect(Object.keys(optimizerStateShapes(shapes))).toHaveLength(3 * Object.keys(shapes).length);
    // A checkpoint file is no optimiser state.
    expect(() => loadOptimizerState(a.checkpoint, shapes)).toThrow(/optimizer state/);
    // A state needs its checkpoint.
    await expect(ExpertTrainer.create({ ...OPTIONS, optimizerState: a.optimizer })).rejects.toThrow(
      /give its init/,
    );
  }, 60_000);
});
