import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { decodeShard } from '@archipelago/data';
import { LinearMmseDenoiser } from '@archipelago/diffusion';
import {
  buildNetwork,
  ExpertTrainer,
  loadCheckpoint,
  saveCheckpoint,
  specOfMeta,
} from '@archipelago/models';
import type { Dataset, Run } from '@archipelago/protocol';
import * as tf from '@tensorflow/tfjs-core';
import { eq } from 'drizzle-orm';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkpoints,
  type ExpertRow,
  events,
  experts,
  runs,
  type ShardRow,
  shards,
} from '../../src/db/schema/index.js';
import { newId } from '../../src/ids.js';
import {
  acceptanceFailure,
  DEFAULT_ACCEPTANCE,
  MID_TIMES,
  meanRatio,
  x0Errors,
} from '../../src/services/acceptance.js';
import { fitReference, toUnitRange } from '../../src/services/reference-denoisers.js';
import {
  expectedArchitecture,
  judgeCheckpoint,
  objectiveConfigOf,
  type ValidationInput,
  type ValidationOutcome,
  validateCheckpoint,
} from '../../src/services/validation.js';
import { auth, makeApp, type TestApp, waitForJob } from '../helpers.js';

const STEPS = 400;
/** A snapshot this early is "barely trained" (it then claims all STEPS). */
const BARELY = 40;
const SIZE = 8;
const PER_CLASS = 160;

/**
 * 8x8 images made of four 4x4 patches, each one of four templates of its class at a random
 * brightness plus a little per-pixel jitter: far from Gaussian (each patch is one of a few
 * shapes), so a trained network beats the linear reference, and the two classes (whose templates
 * live in the top / bottom half of each patch) cluster apart.
 */
async function makeTemplateFolder(root: string): Promise<string> {
  const dir = path.join(root, 'templates');
  let state = 12345;
  const rnd = () => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state / 2147483648;
  };
  for (const c of [0, 1]) {
    await mkdir(path.join(dir, `class-${c}`), { recursive: true });
    for (let i = 0; i < PER_CLASS; i++) {
      const pixels = Buffer.alloc(SIZE * SIZE);
      for (const [py, px] of [
        [0, 0],
        [0, 4],
        [4, 0],
        [4, 4],
      ] as const) {
        const template = Math.floor(rnd() * 4);
        const level = 170 + Math.floor(rnd() * 80);
        for (let y = 0; y < 4; y++) {
          for (let x = 0; x < 4; x++) {
            const half = c === 0 ? y < 2 : y >= 2;
            const on = half && ((x + y + template) % 4 < 2 || (template === 3 && x === y));
            pixels[(py + y) * SIZE + px + x] = Math.min(
              255,
              (on ? level : 15) + Math.floor(rnd() * 12),
            );
          }
        }
      }
      await sharp(pixels, { raw: { width: SIZE, height: SIZE, channels: 1 } })
        .png()
        .toFile(path.join(dir, `class-${c}`, `img-${String(i).padStart(3, '0')}.png`));
    }
  }
  return dir;
}

/**
 * The acceptance test (docs/method.md §12) on real checkpoints from the real trainer, judged by a
 * real coordinator (SQLite, object store) with the run's default bar: honest experts pass; one
 * trained on the other cluster with this cluster's fingerprint copied in, an input-copying network,
 * a barely trained network, an untrained one and non-finite weights do not.
 */
describe('checkpoint validation', () => {
  let t: TestApp;
  let run: Run;
  /** The flow-matching expert of cluster 0 and the epsilon-DDPM expert of cluster 1. */
  let fm: ExpertRow;
  let ddpm: ExpertRow;
  const trained = new Map<string, Uint8Array>();

  const shardOf = (cluster: number, split: 'train' | 'val'): ShardRow => {
    const { db } = t.coordinator;
    const runRow = db.select().from(runs).where(eq(runs.id, run.id)).get()!;
    return db
      .select()
      .from(shards)
      .where(eq(shards.clusteringId, runRow.clusteringId!))
      .all()
      .find((s) => s.cluster === cluster && s.split === split)!;
  };

  /**
   * Train `expert`'s objective on `onCluster`'s training shard for STEPS steps (EMA weights, a
   * warmed-up learning rate: as a worker trains), recording `fingerprintOf`'s shard; also returns
   * the snapshot at BARELY steps.
   */
  async function train(
    expert: ExpertRow,
    onCluster: number,
    fingerprintOf: number,
  ): Promise<{ final: Uint8Array; barely: Uint8Array }> {
    const { db, store } = t.coordinator;
    const runRow = db.select().from(runs).where(eq(runs.id, run.id)).get()!;
    const set = decodeShard(await store.getBytes(shardOf(onCluster, 'train').key));
    const { kind: _kind, ...config } = expectedArchitecture(runRow) as { kind: 'dit' } & Record<
      string,
      unknown
    >;
    const trainer = await ExpertTrainer.create({
      network: { kind: 'dit', config: config as never },
      objective: objectiveConfigOf(expert),
      optimizer: { learningRate: 2e-3 },
      ema: { decay: 0.999 },
      seed: 1,
    });
    const size = set.height * set.width * set.channels;
    const x = new Float32Array(16 * size);
    // Unconditional training (the null class): what the acceptance test scores.
    const labels =
      runRow.config.numClasses > 0 ? new Int32Array(16).fill(runRow.config.numClasses) : undefined;
    const pixels = toUnitRange(set);
    const fingerprint = { dataFingerprint: shardOf(fingerprintOf, 'train').sha256 };
    let barely: Uint8Array | undefined;
    for (let step = 0; step < STEPS; step++) {
      for (let b = 0; b < 16; b++) {
        const i = (step * 16 + b) % set.count;
        x.set(pixels.subarray(i * size, (i + 1) * size), b * size);
      }
      trainer.learningRate = 2e-3 * Math.min(1, (step + 1) / 40);
      await trainer.step({ data: x, shape: [16, set.height, set.width, set.channels] }, labels);
      if (step + 1 === BARELY) barely = await claimingSteps(await trainer.save(fingerprint));
    }
    const final = await trainer.save(fingerprint);
    await trainer.dispose();
    return { final, barely: barely! };
  }

  /** The same weights, saying they were trained for all STEPS (a worker's claim costs nothing). */
  async function claimingSteps(bytes: Uint8Array): Promise<Uint8Array> {
    const { meta, params } = loadCheckpoint(bytes);
    return saveCheckpoint({ params, meta: { ...meta, step: STEPS } });
  }

  /** Put `bytes` in the store as the expert's final checkpoint, awaiting validation. */
  async function submit(expert: ExpertRow, bytes: Uint8Array): Promise<string> {
    const { db, store } = t.coordinator;
    const id = newId('checkpoint');
    const key = `runs/${run.id}/experts/${expert.cluster}/${id}.safetensors`;
    const info = await store.put(key, bytes);
    db.insert(checkpoints)
      .values({
        id,
        expertId: expert.id,
        step: STEPS,
        key,
        sha256: info.sha256!,
        bytes: bytes.byteLength,
        final: true,
        status: 'accepted',
      })
      .run();
    db.update(experts)
      .set({ status: 'validating', checkpointId: id, checkpointStep: STEPS, step: STEPS })
      .where(eq(experts.id, expert.id))
      .run();
    return id;
  }

  /** Validate as the job does: judged on the coordinator's compute thread, recorded here. */
  const validate = (expert: ExpertRow, checkpointId: string, stages: string[] = []) =>
    validateCheckpoint(
      {
        db: t.coordinator.db,
        store: t.coordinator.store,
        log: t.coordinator.log,
        compute: t.coordinator.compute!,
      },
      { expertId: expert.id, checkpointId },
      (stage) => stages.push(stage),
    );

  /** What judging reads from the database, as validateCheckpoint gathers it. */
  const judgeInput = (expert: ExpertRow, checkpointId: string): ValidationInput => {
    const { db } = t.coordinator;
    const row = expertRow(expert.id);
    const trainShard = db.select().from(shards).where(eq(shards.id, row.trainShardId!)).get()!;
    return {
      run: db.select().from(runs).where(eq(runs.id, row.runId)).get()!,
      expert: row,
      ckpt: db.select().from(checkpoints).where(eq(checkpoints.id, checkpointId)).get()!,
      trainShard,
      shards: db
        .select()
        .from(shards)
        .where(eq(shards.clusteringId, trainShard.clusteringId))
        .all(),
    };
  };

  const expertRow = (id: string) =>
    t.coordinator.db.select().from(experts).where(eq(experts.id, id)).get()!;

  const verdicts = (expert: ExpertRow) =>
    t.coordinator.db
      .select()
      .from(events)
      .where(eq(events.expertId, expert.id))
      .all()
      .filter((e) => e.type === 'expert.rejected' || e.type === 'expert.validated');

  beforeAll(async () => {
    t = await makeApp();
    const folder = await makeTemplateFolder(t.dataDir);
    const imp = await t.app.inject({
      method: 'POST',
      url: '/api/v1/datasets',
      headers: auth,
      payload: {
        name: 'v',
        source: { kind: 'folder', path: folder },
        resolution: SIZE,
        channels: 1,
        cluster: { k: 2, valFraction: 0.25 },
      },
    });
    const job = await waitForJob(t.app, imp.json().job.id);
    const ds = (
      await t.app.inject({ method: 'GET', url: `/api/v1/datasets/${job.result!.datasetId}` })
    ).json() as Dataset;
    // The two classes are the two clusters.
    for (const s of ds.clusterings[0]!.shards)
      expect(Object.values(s.classCounts).filter((n) => n > 0)).toHaveLength(1);
    run = (
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/runs',
        headers: auth,
        payload: {
          datasetId: ds.id,
          experts: 2,
          objectives: [{ name: 'fm' }, { name: 'ddpm' }],
          stepsPerExpert: STEPS,
          model: 'micro',
        },
      })
    ).json() as Run;
    expect(run.status).toBe('training');
    // No acceptance policy given: the run holds the defaults, the honest bar.
    expect(run.config.acceptance).toEqual(DEFAULT_ACCEPTANCE);
    const rows = t.coordinator.db.select().from(experts).where(eq(experts.runId, run.id)).all();
    fm = rows.find((e) => e.cluster === 0)!;
    ddpm = rows.find((e) => e.cluster === 1)!;
    expect([fm.objective, ddpm.objective]).toEqual(['fm', 'ddpm']);
    const honestFm = await train(fm, 0, 0);
    trained.set('fm', honestFm.final);
    trained.set('fm-barely', honestFm.barely);
    trained.set('ddpm', (await train(ddpm, 1, 1)).final);
    // An impostor: trained on cluster 1's images, claiming cluster 0's shard.
    trained.set('fm-on-other', (await train(fm, 1, 0)).final);
  }, 240_000);
  afterAll(async () => t.close());

  it('rejects a checkpoint with a NaN, naming the tensor; the expert goes back to pending', async () => {
    const bytes = Uint8Array.from(trained.get('fm')!);
    // The last 4 bytes belong to the last tensor's last float32: make it NaN.
    bytes.set([0x00, 0x00, 0xc0, 0x7f], bytes.length - 4);
    const id = await submit(fm, bytes);
    const outcome = await validate(fm, id);
    expect(outcome.accepted).toBe(false);
    expect(outcome.reason).toMatch(/non_finite: .*NaN/i);
    const e = expertRow(fm.id);
    expect(e).toMatchObject({ status: 'pending', checkpointId: null, step: 0 });
    expect(e.validationError).toMatch(/non_finite/);
    const ck = t.coordinator.db.select().from(checkpoints).where(eq(checkpoints.id, id)).get()!;
    expect(ck.status).toBe('rejected');
    expect(await t.coordinator.store.head(ck.key)).toBeNull();
  });

  it('judges the same on a compute thread as on the event loop, and leaves recording to the caller', async () => {
    expect(t.coordinator.compute?.size).toBe(1);
    const bytes = Uint8Array.from(trained.get('fm')!);
    bytes.set([0x00, 0x00, 0xc0, 0x7f], bytes.length - 4);
    const id = await submit(fm, bytes);
    const input = judgeInput(fm, id);
    const here = await judgeCheckpoint(t.coordinator.store, input);
    const there = await t.coordinator.compute!.run('judge', input);
    expect(here.accepted).toBe(false);
    expect(here.reason).toMatch(/non_finite: .*NaN/i);
    expect(there).toEqual(here);
    // Judging wrote nothing: the expert still waits for its verdict.
    expect(expertRow(fm.id)).toMatchObject({ status: 'validating', checkpointId: id });
    const outcome = await validate(fm, id);
    expect(outcome).toEqual({ ...here });
    expect(expertRow(fm.id).status).toBe('pending');
  });

  it('rejects infinite weights', async () => {
    const bytes = Uint8Array.from(trained.get('fm')!);
    bytes.set([0x00, 0x00, 0x80, 0x7f], bytes.length - 4); // +Inf
    const outcome = await validate(fm, await submit(fm, bytes));
    expect(outcome.accepted).toBe(false);
    expect(outcome.reason).toMatch(/non_finite: .*Infinity/);
  });

  it('rejects a checkpoint that says it was trained on another shard', async () => {
    const { meta, params } = loadCheckpoint(trained.get('fm')!);
    const bytes = await saveCheckpoint({
      params,
      meta: { ...meta, dataFingerprint: shardOf(1, 'train').sha256 },
    });
    const outcome = await validate(fm, await submit(fm, bytes));
    expect(outcome.accepted).toBe(false);
    expect(outcome.reason).toMatch(/^wrong_shard: the checkpoint was trained on data/);
  });

  it('rejects a network trained on the other cluster that copies this shard fingerprint: not specific', async () => {
    const outcome = await validate(fm, await submit(fm, trained.get('fm-on-other')!));
    expect(outcome.accepted).toBe(false);
    // It also fails the bars of this shard's reference; what gives it away is specificity.
    expect(outcome.reason).toMatch(/(^|; )not_specific: /);
    // Normalised by each shard's own reference, it is better on the cluster it was trained on.
    expect(outcome.crossError![1]!).toBeLessThan(outcome.crossError![0]!);
    expect(outcome.acceptance!.specificity!).toBeLessThan(1);
    expect(expertRow(fm.id).acceptanceSpecificity).toBe(outcome.acceptance!.specificity);
  });

  it('rejects a network that copies its input: linear, so no better than the reference', async () => {
    const outcome = await validate(fm, await submit(fm, await inputCopier(trained.get('fm')!)));
    expect(outcome.accepted).toBe(false);
    expect(outcome.reason).toMatch(/^no_better_than_reference: x0 error at mid noise/);
    expect(outcome.acceptance!.midRatio).toBeGreaterThan(1);
  });

  it('rejects a barely trained network that claims the full training', async () => {
    const outcome = await validate(fm, await submit(fm, trained.get('fm-barely')!));
    expect(outcome.accepted).toBe(false);
    expect(outcome.reason).toMatch(/^no_better_than_reference: /);
    expect(outcome.acceptance!.midRatio).toBeGreaterThan(DEFAULT_ACCEPTANCE.maxMidRatio);
  });

  it('rejects an untrained network that claims the full training: its loss is no better than zero output', async () => {
    const { meta } = loadCheckpoint(trained.get('fm')!);
    const { kind: _kind, ...config } = meta.architecture as { kind: string } & Record<
      string,
      unknown
    >;
    const fresh = buildNetwork({ kind: 'dit', config } as never, 3);
    const bytes = await saveCheckpoint({ params: fresh.params, meta: { ...meta, step: STEPS } });
    fresh.dispose();
    const outcome = await validate(fm, await submit(fm, bytes));
    expect(outcome.accepted).toBe(false);
    // Its zero output makes it an input copier in x0 space (x0_hat = x_t): linear.
    expect(outcome.reason).toMatch(/^no_better_than_reference: /);
    // The DiT's output projection starts at zero: exactly the baseline.
    expect(outcome.loss!).toBeCloseTo(outcome.baseline!, 4);
  });

  it('draws fresh secret noise for every validation and records it with the verdict', () => {
    const seeds = verdicts(fm)
      .map((e) => (e.data as { acceptance?: { seed: number } }).acceptance?.seed)
      .filter((s) => s !== undefined);
    expect(seeds.length).toBeGreaterThanOrEqual(4);
    expect(new Set(seeds).size).toBe(seeds.length);
    // Not the run's seed, nor anything else a worker was told.
    expect(seeds).not.toContain(run.config.seed);
  });

  it('accepts the honest experts, flow matching and epsilon DDPM (judged through the conversion sampling uses), and records their margins', async () => {
    for (const [expert, name] of [
      [fm, 'fm'],
      [ddpm, 'ddpm'],
    ] as const) {
      const id = await submit(expert, trained.get(name)!);
      const stages: string[] = [];
      const outcome = await validate(expert, id, stages);
      expect(outcome.reason, name).toBeUndefined();
      // Progress reports come back from the compute thread.
      expect(stages).toEqual([
        'checking the file',
        'acceptance test',
        'cluster specificity',
        'done',
      ]);
      expect(outcome.accepted).toBe(true);
      const a = outcome.acceptance!;
      expect(a.midRatio).toBeLessThanOrEqual(DEFAULT_ACCEPTANCE.maxMidRatio);
      expect(a.highRatio).toBeLessThanOrEqual(DEFAULT_ACCEPTANCE.maxHighRatio);
      expect(a.specificity!).toBeGreaterThan(1);
      expect(a.reference).toBe('full');
      // Normalised, it fits its own cluster best.
      expect(outcome.crossError![expert.cluster]!).toBeLessThan(
        outcome.crossError![1 - expert.cluster]!,
      );
      expect(expertRow(expert.id)).toMatchObject({
        status: 'done',
        checkpointId: id,
        validationError: null,
        acceptanceMidRatio: a.midRatio,
        acceptanceHighRatio: a.highRatio,
        acceptanceSpecificity: a.specificity,
      });
      const recorded = verdicts(expert).at(-1)!;
      expect(recorded.type).toBe('expert.validated');
      expect((recorded.data as { acceptance: ValidationOutcome['acceptance'] }).acceptance).toEqual(
        a,
      );
      // A second, stale run of the same job changes nothing.
      expect(await validate(expert, id)).toMatchObject({ skipped: true, accepted: true });
    }
    const shown = (
      await t.app.inject({ method: 'GET', url: `/api/v1/runs/${run.id}` })
    ).json() as Run;
    expect(shown.experts[0]!.acceptance).toEqual({
      midRatio: expertRow(fm.id).acceptanceMidRatio,
      highRatio: expertRow(fm.id).acceptanceHighRatio,
      specificity: expertRow(fm.id).acceptanceSpecificity,
    });
  });

  it('scoring alone: the reference itself and a per-pixel Wiener filter never beat the reference at mid noise', async () => {
    const { store } = t.coordinator;
    const train = decodeShard(await store.getBytes(shardOf(0, 'train').key));
    const val = decodeShard(await store.getBytes(shardOf(0, 'val').key));
    const fit = await fitReference(train);
    const reference = new LinearMmseDenoiser(fit.moments);
    const variances = new Float64Array(SIZE * SIZE);
    const pixels = toUnitRange(train);
    for (let i = 0; i < train.count; i++)
      for (let j = 0; j < variances.length; j++)
        variances[j] +=
          (pixels[i * variances.length + j]! - fit.moments.mean[j]!) ** 2 / (train.count - 1);
    const wiener = new LinearMmseDenoiser({ mean: fit.moments.mean, basis: null, variances });
    for (const [model, floor] of [
      [reference.velocity(), 0.95],
      [wiener.velocity(), 1],
      // A network that copies its input: v = x_t, so x0_hat = (1 - t) x_t.
      [(x: tf.Tensor) => tf.clone(x), 1],
    ] as const) {
      const levels = await x0Errors(
        model,
        reference,
        toUnitRange(val),
        [SIZE, SIZE, 1],
        MID_TIMES,
        {
          seed: 7,
        },
      );
      const midRatio = meanRatio(levels, MID_TIMES);
      expect(midRatio).toBeGreaterThan(floor);
      expect(
        acceptanceFailure({ midRatio, highRatio: 1, specificity: 2 }, DEFAULT_ACCEPTANCE),
      ).toMatch(/^no_better_than_reference: /);
    }
    reference.dispose();
    wiener.dispose();
    // The specOfMeta of a trained checkpoint is the expert's spec (what the conversion is chosen by).
    expect(specOfMeta(loadCheckpoint(trained.get('ddpm')!).meta).name).toBe('ddpm');
  });
});

/**
 * A DiT whose weights make it output its input (`net(x) = x`, to ~1e-4), built from a trained
 * checkpoint by weight surgery: every block is the identity (zero gates and t_block), the time
 * and label embeddings are zero, the patch embedding writes [p, -p, c, -c, 0, ...] (mean zero, so the final
 * LayerNorm only divides by its spread, which the large constant c fixes), and the output
 * projection undoes that division.
 */
async function inputCopier(bytes: Uint8Array): Promise<Uint8Array> {
  const { meta, params } = loadCheckpoint(bytes);
  const arch = meta.architecture as { patchSize: number; channels: number; hidden: number };
  const P = arch.patchSize * arch.patchSize * arch.channels;
  const D = arch.hidden;
  const c = 1000;
  const zero = (name: string) => params[name]!.data.fill(0);
  for (const name of Object.keys(params)) {
    if (name.startsWith('t_block.') || name.startsWith('t_embedder.mlp.2.')) zero(name);
    if (/^blocks\.\d+\.scale_shift_table$/.test(name) || name === 'y_embedder.embedding_table')
      zero(name);
  }
  zero('pos_embed');
  zero('final_layer.scale_shift_table');
  const embed = zero('patch_embed.weight'); // [P, D]
  for (let i = 0; i < P; i++) {
    embed[i * D + i] = 1;
    embed[i * D + P + i] = -1;
  }
  const bias = zero('patch_embed.bias');
  bias[2 * P] = c;
  bias[2 * P + 1] = -c;
  const out = zero('final_layer.linear.weight'); // [D, P]
  for (let i = 0; i < P; i++) out[i * P + i] = c * Math.sqrt(2 / D);
  zero('final_layer.linear.bias');
  return saveCheckpoint({ params, meta });
}
