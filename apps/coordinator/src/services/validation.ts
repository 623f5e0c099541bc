/**
 * Checkpoint validation (docs/architecture.md "Security model", docs/method.md §12): a final
 * checkpoint enters an ensemble only once the coordinator has checked it itself, whoever trained it.
 *
 * 1. the stored bytes still hash to what was committed;
 * 2. it is an expert checkpoint of exactly the run's architecture and the expert's objective and
 *    schedule, every tensor present with its shape, every value finite (`loadCheckpoint`);
 * 3. what the worker says about it (data fingerprint, steps) matches the expert: recorded, and a
 *    mismatch is a cheap early rejection, but never evidence for acceptance;
 * 4. the acceptance test (`acceptance.ts`), on held-out images that never left the coordinator and
 *    noise from a fresh secret seed: its x0 error through the production conversion against the
 *    linear MMSE reference of its shard, at mid noise (must beat it) and at high noise (must not be
 *    much worse), and cluster specificity (its reference-normalised error lowest on its own shard).
 *
 * The held-out denoising loss in the objective's own space (and a zero-output network's on the same
 * draws) is recorded beside it, for the manifest; it decides nothing.
 */
import { createHash, randomInt } from 'node:crypto';
import { decodeShard, type ImageSet } from '@archipelago/data';
import {
  createObjective,
  heldOutObjective,
  LinearMmseDenoiser,
  type ObjectiveConfig,
  resolveObjective,
  velocityExpert,
} from '@archipelago/diffusion';
import {
  architectureOf,
  CheckpointError,
  ditConfigFromPreset,
  resolveNetworkSpec,
  specOfMeta,
  type TrainableNetwork,
} from '@archipelago/models';
import { canonicalJson, type RunConfig } from '@archipelago/protocol';
import { ObjectNotFoundError, type ObjectStore } from '@archipelago/storage';
import * as tf from '@tensorflow/tfjs-core';
import { and, desc, eq, ne } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { ComputePool } from '../compute/compute-pool.js';
import type { Db, Tx } from '../db/database.js';
import {
  type CheckpointRow,
  checkpoints,
  type ExpertRow,
  experts,
  type RunRow,
  runs,
  type ShardRow,
  shards,
} from '../db/schema/index.js';
import { networkFromCheckpoint } from '../ensembles/network-from-checkpoint.js';
import { EVENTS, recordEvent } from '../lifecycle/events.js';
import { transitionExpert } from '../lifecycle/expert-lifecycle.js';
import { routeWhenExpertsDone } from '../lifecycle/pipeline.js';
import {
  type AcceptanceScores,
  acceptanceFailure,
  DEFAULT_ACCEPTANCE,
  drawsFor,
  HIGH_TIMES,
  type LevelError,
  MID_TIMES,
  meanRatio,
  OTHER_SHARD_IMAGES,
  SPECIFICITY_NEIGHBOURS,
  x0Errors,
} from './acceptance.js';
import { checkStoredCheckpoint, deleteCheckpointObject } from './checkpoint-objects.js';
import { DEFAULT_INFERENCE } from './ensembles.js';
import { shardMean, shardReference, toUnitRange } from './reference-denoisers.js';

/** Noise draws per validation image (the loss depends strongly on t). */
const REPEATS = 4;
/** Rows per forward pass. */
const CHUNK = 128;

export interface ValidationDeps {
  db: Db;
  store: ObjectStore;
  log: Logger;
  /** Judge on a compute thread (compute/compute-pool.ts) instead of on this event loop. */
  compute?: ComputePool;
}

/**
 * Everything judging a checkpoint needs from the database, read before it starts: judging itself
 * reads only the object store, so it can run on a compute thread while this thread stays the one
 * that writes SQLite (the verdict is recorded here, {@link validateCheckpoint}).
 */
export interface ValidationInput {
  run: RunRow;
  expert: ExpertRow;
  ckpt: CheckpointRow;
  /** The expert's training shard, if it has one. */
  trainShard: ShardRow | undefined;
  /** Every shard of the training shard's clustering (empty without one). */
  shards: ShardRow[];
}

export interface ValidationPayload {
  expertId: string;
  checkpointId: string;
}

export interface ValidationOutcome {
  accepted: boolean;
  reason?: string;
  /** Held-out loss in the objective's own space (a diagnostic), and a zero-output network's. */
  loss?: number;
  baseline?: number;
  /**
   * The expert's reference-normalised x0 error (mean over every scored level of its error over the
   * shard's reference) on each cluster's held-out split, by cluster; null where not scored.
   */
  crossError?: (number | null)[];
  /** The acceptance test's measurements. */
  acceptance?: AcceptanceScores & {
    levels: LevelError[];
    reference: 'full' | 'diagonal';
    /** The secret seed of this validation's noise, disclosed with the verdict for audit. */
    seed: number;
  };
}

/** What a run's experts are trained as: the DiT config of its preset for its dataset. */
export function expectedArchitecture(run: RunRow): Record<string, unknown> {
  return architectureOfRun(run.config);
}

/** The DiT architecture a run config trains, preset and overrides resolved. */
export function architectureOfRun(c: RunConfig): Record<string, unknown> {
  const spec = resolveNetworkSpec({
    kind: 'dit',
    config: ditConfigFromPreset(c.model, {
      imageSize: c.resolution,
      channels: c.channels,
      numClasses: c.numClasses,
      ...(c.patchSize !== undefined ? { patchSize: c.patchSize } : {}),
    }),
  });
  return architectureOf(spec);
}

/**
 * The objective an expert's held-out loss is measured under: its spec without its training-time
 * choices (the registry's `heldOutObjective`: FM over uniform times whatever the run's
 * `fmTimeSampling`, DDPM unweighted), so losses compare between experts and runs.
 */
export function objectiveConfigOf(expert: ExpertRow): ObjectiveConfig {
  if (!expert.spec) throw new Error(`expert ${expert.id} has no objective spec yet`);
  return heldOutObjective(expert.spec as ObjectiveConfig);
}

/**
 * Mean loss of `net` on `set` (all of it, REPEATS noise draws each, seeded) and the loss of a
 * zero-output network on the same draws.
 */
export function heldOutLoss(
  net: TrainableNetwork,
  objective: ObjectiveConfig,
  set: ImageSet,
  numClasses: number,
  seed: number,
): { loss: number; baseline: number } {
  const obj = createObjective(objective);
  const size = set.height * set.width * set.channels;
  let sum = 0;
  let base = 0;
  let rows = 0;
  for (let r = 0; r < REPEATS; r++) {
    for (let start = 0; start < set.count; start += CHUNK) {
      const n = Math.min(CHUNK, set.count - start);
      const data = new Float32Array(n * size);
      for (let i = 0; i < n * size; i++) data[i] = set.pixels[start * size + i]! / 127.5 - 1;
      const [l, b] = tf.tidy(() => {
        const x0 = tf.tensor4d(data, [n, set.height, set.width, set.channels]);
        const { xt, tau, target } = obj.sampleTraining(x0, seed + r * 7919 + start);
        const labels =
          numClasses > 0
            ? tf.tensor1d(
                Int32Array.from(set.labels.subarray(start, start + n), (y) =>
                  y >= 0 && y < numClasses ? y : numClasses,
                ),
                'int32',
              )
            : undefined;
        const pred = net.apply(xt, tau, labels);
        const perRow = n * size;
        return [
          tf.sum(tf.square(tf.sub(pred, target))).dataSync()[0]! / perRow,
          tf.sum(tf.square(target)).dataSync()[0]! / perRow,
        ];
      });
      sum += l! * n;
      base += b! * n;
      rows += n;
    }
  }
  return { loss: sum / rows, baseline: base / rows };
}

const valCache = new Map<string, ImageSet>();

async function valSet(store: ObjectStore, key: string, sha256: string): Promise<ImageSet> {
  const hit = valCache.get(sha256);
  if (hit) return hit;
  const bytes = await store.getBytes(key);
  const set = decodeShard(bytes, { file: key });
  if (valCache.size > 64) valCache.clear();
  valCache.set(sha256, set);
  return set;
}

/** A shard's images (not cached: training shards are only read to fit their reference). */
async function imageSet(store: ObjectStore, key: string): Promise<ImageSet> {
  return decodeShard(await store.getBytes(key), { file: key });
}

/** The first `n` images of a set (shards are stored shuffled, so any prefix is a sample). */
function subset(set: ImageSet, n: number): ImageSet {
  if (set.count <= n) return set;
  const size = set.height * set.width * set.channels;
  return {
    ...set,
    count: n,
    pixels: set.pixels.subarray(0, n * size),
    labels: set.labels.subarray(0, n),
  };
}

/**
 * The clusters an expert's specificity is checked on: those with held-out images, nearest to its
 * own by the distance between their training shards' means, at most SPECIFICITY_NEIGHBOURS.
 */
async function neighbours(store: ObjectStore, all: ShardRow[], own: number): Promise<number[]> {
  const train = (k: number) => all.find((s) => s.cluster === k && s.split === 'train');
  const candidates = all
    .filter((s) => s.split === 'val' && s.count > 0 && s.cluster !== own && train(s.cluster))
    .map((s) => s.cluster);
  if (candidates.length <= SPECIFICITY_NEIGHBOURS) return candidates;
  const mean = (k: number) => {
    const s = train(k)!;
    return shardMean(s.sha256, () => imageSet(store, s.key));
  };
  const mine = await mean(own);
  const distance = new Map<number, number>();
  for (const k of candidates) {
    const m = await mean(k);
    distance.set(
      k,
      m.reduce((a, v, j) => a + (v - mine[j]!) ** 2, 0),
    );
  }
  return candidates
    .sort((a, b) => distance.get(a)! - distance.get(b)!)
    .slice(0, SPECIFICITY_NEIGHBOURS);
}

/** A validation with nothing to judge (the expert moved on): what the job returns. */
export interface SkippedValidation {
  accepted: boolean;
  skipped: true;
}

/**
 * The database half before judging: the rows judging needs, or, for a stale job (the expert moved
 * on, e.g. a retry after the verdict was written), nothing to do.
 */
export function prepareValidation(
  db: Db,
  payload: ValidationPayload,
): { skipped: SkippedValidation } | { input: ValidationInput } {
  const expert = db.select().from(experts).where(eq(experts.id, payload.expertId)).get();
  const ckpt = db.select().from(checkpoints).where(eq(checkpoints.id, payload.checkpointId)).get();
  if (!expert || !ckpt)
    throw new Error(`expert ${payload.expertId} or checkpoint ${payload.checkpointId} is gone`);
  if (expert.status !== 'validating' || expert.checkpointId !== ckpt.id) {
    return { skipped: { accepted: expert.status === 'done', skipped: true } };
  }
  const run = db.select().from(runs).where(eq(runs.id, expert.runId)).get()!;
  const trainShard = expert.trainShardId
    ? db.select().from(shards).where(eq(shards.id, expert.trainShardId)).get()
    : undefined;
  return {
    input: {
      run,
      expert,
      ckpt,
      trainShard,
      shards: trainShard
        ? db.select().from(shards).where(eq(shards.clusteringId, trainShard.clusteringId)).all()
        : [],
    },
  };
}

/** Judge on the compute pool when there is one, else here (reads only the object store). */
export async function computeValidation(
  deps: { store: ObjectStore; compute?: ComputePool | undefined },
  input: ValidationInput,
  progress: (stage: string, done: number, total: number) => void = () => {},
): Promise<ValidationOutcome> {
  progress('checking the file', 0, 3);
  const outcome = deps.compute
    ? await deps.compute.run('judge', input, { onProgress: progress })
    : await judgeCheckpoint(deps.store, input, progress);
  progress('done', 3, 3);
  return outcome;
}

/**
 * Record a verdict in `tx`, unless the expert moved on while it was judged (a stale result):
 * then nothing is written and the skip is returned.
 */
export function applyValidation(
  tx: Tx,
  payload: ValidationPayload,
  outcome: ValidationOutcome,
): { recorded: CheckpointRow } | { skipped: SkippedValidation } {
  const expert = tx.select().from(experts).where(eq(experts.id, payload.expertId)).get();
  const ckpt = tx.select().from(checkpoints).where(eq(checkpoints.id, payload.checkpointId)).get();
  if (!expert || !ckpt)
    throw new Error(`expert ${payload.expertId} or checkpoint ${payload.checkpointId} is gone`);
  if (expert.status !== 'validating' || expert.checkpointId !== ckpt.id)
    return { skipped: { accepted: expert.status === 'done', skipped: true } };
  const run = tx.select().from(runs).where(eq(runs.id, expert.runId)).get()!;
  record(tx, run, expert, ckpt, outcome);
  return { recorded: ckpt };
}

/** After a rejection is recorded: delete its object (only its own: nothing another names). */
export async function afterValidation(
  deps: { db: Db; store: ObjectStore },
  ckpt: CheckpointRow,
  outcome: ValidationOutcome,
): Promise<void> {
  if (!outcome.accepted) await deleteCheckpointObject(deps.db, deps.store, ckpt).catch(() => {});
}

/** Validate an expert's final checkpoint and record the verdict (one transaction). */
export async function validateCheckpoint(
  deps: ValidationDeps,
  payload: ValidationPayload,
  progress: (stage: string, done: number, total: number) => void = () => {},
): Promise<ValidationOutcome & { skipped?: boolean }> {
  const { db, log } = deps;
  const prepared = prepareValidation(db, payload);
  if ('skipped' in prepared) return prepared.skipped;
  const { expert } = prepared.input;
  const outcome = await computeValidation(deps, prepared.input, progress);
  log.info({ expert: expert.id, cluster: expert.cluster, ...outcome }, 'checkpoint validated');
  const applied = db.transaction((tx) => applyValidation(tx, payload, outcome));
  if ('skipped' in applied) return applied.skipped;
  await afterValidation(deps, applied.recorded, outcome);
  return outcome;
}

/** The verdict on a checkpoint: reads the object store, never the database (see ValidationInput). */
export async function judgeCheckpoint(
  store: ObjectStore,
  { run, expert, ckpt, trainShard, shards: all }: ValidationInput,
  progress: (stage: string, done: number, total: number) => void = () => {},
): Promise<ValidationOutcome> {
  // Its size and header first, no tensor data read: the whole file is only read once it can be a
  // checkpoint of this run's architecture (services/checkpoint-objects.ts).
  // Only an object that is not there is a verdict; a store that fails or stalls says nothing about
  // the checkpoint: thrown, so the job's attempt fails and is retried (services/resume-points.ts
  // made the same mistake, and the chaos run saw an accepted checkpoint rejected and deleted for a
  // store's 500).
  const refused = await checkStoredCheckpoint(store, run, expert, ckpt).catch((err: unknown) => {
    if (err instanceof ObjectNotFoundError)
      return `missing_object: the checkpoint object ${ckpt.key} does not exist`;
    throw err;
  });
  if (refused) return { accepted: false, reason: refused };
  let bytes: Uint8Array;
  try {
    bytes = await store.getBytes(ckpt.key);
  } catch (err) {
    if (!(err instanceof ObjectNotFoundError)) throw err;
    return {
      accepted: false,
      reason: `missing_object: the checkpoint object ${ckpt.key} vanished`,
    };
  }
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== ckpt.sha256) {
    return {
      accepted: false,
      reason: `the stored checkpoint's sha256 is ${sha}, committed as ${ckpt.sha256}`,
    };
  }
  const objective = objectiveConfigOf(expert);
  let loaded: ReturnType<typeof networkFromCheckpoint>;
  try {
    loaded = networkFromCheckpoint(bytes, {
      kind: 'expert',
      architecture: expectedArchitecture(run),
      objective: expert.objective as ObjectiveConfig['name'],
    });
  } catch (err) {
    const code = err instanceof CheckpointError ? `${err.code}: ` : '';
    return { accepted: false, reason: `${code}${(err as Error).message}` };
  }
  const { meta, net } = loaded;
  try {
    // The network must predict what the expert's spec says (schedule, prediction target).
    let trained: string;
    try {
      trained = canonicalJson(heldOutObjective(specOfMeta(meta)));
    } catch (err) {
      return { accepted: false, reason: `config_mismatch: ${(err as Error).message}` };
    }
    const wanted = canonicalJson(
      heldOutObjective(resolveObjective(expert.spec as ObjectiveConfig)),
    );
    if (trained !== wanted) {
      return {
        accepted: false,
        reason: `config_mismatch: the checkpoint was trained as ${trained}, the expert is ${wanted}`,
      };
    }
    if (!trainShard) return { accepted: false, reason: 'the expert has no training shard' };
    if (meta.dataFingerprint !== trainShard.sha256) {
      return {
        accepted: false,
        reason: `wrong_shard: the checkpoint was trained on data ${String(meta.dataFingerprint).slice(0, 12)}, this expert's shard is ${trainShard.sha256.slice(0, 12)}`,
      };
    }
    if (meta.step < expert.targetSteps) {
      return {
        accepted: false,
        reason: `the checkpoint has ${meta.step} steps, the run asks for ${expert.targetSteps}`,
      };
    }
    progress('acceptance test', 1, 3);
    const ownVal = all.find((s) => s.cluster === expert.cluster && s.split === 'val');
    if (!ownVal || ownVal.count === 0)
      return { accepted: false, reason: 'the expert has no validation images to check it on' };
    // Fresh for every validation, never derived from anything a worker has seen.
    const seed = randomInt(1, 2 ** 31 - 1);
    const ownSet = await valSet(store, ownVal.key, ownVal.sha256);
    const { loss, baseline } = heldOutLoss(net, objective, ownSet, run.config.numClasses, seed);
    const inference = DEFAULT_INFERENCE;
    // The production conversion: what sampling turns this expert into.
    const model = velocityExpert({
      objective: expert.spec as ObjectiveConfig,
      network: (x, tau, labels) => net.apply(x, tau, labels),
      conversion: {
        mode: inference.conversion,
        alphaMin: inference.alphaMin,
        x0Clamp: [-inference.x0Clamp, inference.x0Clamp],
      },
    });
    const times = [...MID_TIMES, ...HIGH_TIMES];
    const score = async (cluster: number, set: ImageSet) => {
      const train = all.find((s) => s.cluster === cluster && s.split === 'train')!;
      const fit = await shardReference(train.sha256, () => imageSet(store, train.key));
      const reference = new LinearMmseDenoiser(fit.moments);
      try {
        const levels = await x0Errors(
          model,
          reference,
          toUnitRange(set),
          [set.height, set.width, set.channels],
          times,
          {
            seed: seed + cluster,
            draws: drawsFor(set.count),
            // Unconditional (the null class), as the reference is.
            ...(run.config.numClasses > 0
              ? { labels: new Int32Array(set.count).fill(run.config.numClasses) }
              : {}),
          },
        );
        return { levels, kind: fit.kind };
      } finally {
        reference.dispose();
      }
    };
    const own = await score(expert.cluster, ownSet);
    const crossError: (number | null)[] = Array.from(
      { length: Math.max(...all.map((s) => s.cluster)) + 1 },
      () => null,
    );
    crossError[expert.cluster] = meanRatio(own.levels, times);
    progress('cluster specificity', 2, 3);
    for (const cluster of await neighbours(store, all, expert.cluster)) {
      const val = all.find((s) => s.cluster === cluster && s.split === 'val')!;
      const set = subset(await valSet(store, val.key, val.sha256), OTHER_SHARD_IMAGES);
      crossError[cluster] = meanRatio((await score(cluster, set)).levels, times);
    }
    const others = crossError.filter((e, k): e is number => e !== null && k !== expert.cluster);
    const scores: AcceptanceScores = {
      midRatio: meanRatio(own.levels, MID_TIMES),
      highRatio: meanRatio(own.levels, HIGH_TIMES),
      specificity: others.length > 0 ? Math.min(...others) / crossError[expert.cluster]! : null,
    };
    const base = {
      loss,
      baseline,
      crossError,
      acceptance: { ...scores, levels: own.levels, reference: own.kind, seed },
    };
    const policy = { ...DEFAULT_ACCEPTANCE, ...run.config.acceptance };
    const failure = acceptanceFailure(scores, policy);
    return failure ? { ...base, accepted: false, reason: failure } : { ...base, accepted: true };
  } finally {
    net.dispose();
  }
}

function record(
  tx: Tx,
  run: RunRow,
  expert: ExpertRow,
  ckpt: CheckpointRow,
  outcome: ValidationOutcome,
): void {
  const now = new Date();
  if (outcome.accepted) {
    tx.update(checkpoints)
      .set({ validationLoss: outcome.loss ?? null })
      .where(eq(checkpoints.id, ckpt.id))
      .run();
    recordEvent(tx, EVENTS.expertValidated, {
      runId: run.id,
      expertId: expert.id,
      data: { checkpointId: ckpt.id, step: ckpt.step, ...verdict(outcome) },
    });
    transitionExpert(tx, expert.id, EVENTS.expertDone, {
      set: {
        validationLoss: outcome.loss ?? null,
        validationBaseline: outcome.baseline ?? null,
        validationError: null,
        ...margins(outcome),
      },
      data: { step: ckpt.step, checkpointId: ckpt.id },
    });
    routeWhenExpertsDone(tx, run.id);
    return;
  }
  // Rejected: the expert goes back to the pool at its last accepted non-final checkpoint.
  tx.update(checkpoints)
    .set({
      status: 'rejected',
      reason: outcome.reason ?? 'rejected',
      decidedAt: now,
      validationLoss: outcome.loss ?? null,
    })
    .where(eq(checkpoints.id, ckpt.id))
    .run();
  const previous = tx
    .select()
    .from(checkpoints)
    .where(
      and(
        eq(checkpoints.expertId, expert.id),
        eq(checkpoints.status, 'accepted'),
        ne(checkpoints.id, ckpt.id),
        eq(checkpoints.final, false),
      ),
    )
    .orderBy(desc(checkpoints.step))
    .get();
  transitionExpert(tx, expert.id, EVENTS.expertRejected, {
    set: {
      workerId: null,
      checkpointId: previous?.id ?? null,
      checkpointStep: previous?.step ?? null,
      step: previous?.step ?? 0,
      validationLoss: outcome.loss ?? null,
      validationBaseline: outcome.baseline ?? null,
      validationError: outcome.reason ?? 'rejected',
      imagesPerSec: null,
      ...margins(outcome),
    },
    data: {
      checkpointId: ckpt.id,
      step: ckpt.step,
      reason: outcome.reason,
      ...verdict(outcome),
      resumeFrom: previous?.step ?? 0,
    },
  });
}

/** The acceptance test's measurements as the expert row stores them (null where not measured). */
function margins(outcome: ValidationOutcome) {
  return {
    acceptanceMidRatio: outcome.acceptance?.midRatio ?? null,
    acceptanceHighRatio: outcome.acceptance?.highRatio ?? null,
    acceptanceSpecificity: outcome.acceptance?.specificity ?? null,
  };
}

/** What a verdict event records: every measurement, the secret seed included (for audit). */
function verdict(outcome: ValidationOutcome) {
  return {
    loss: outcome.loss,
    baseline: outcome.baseline,
    crossError: outcome.crossError,
    acceptance: outcome.acceptance,
  };
}
