/**
 * Checkpoint validation (docs/architecture.md "Security model"): a final checkpoint enters an ensemble
 * only once the coordinator has checked it itself, whoever trained it.
 *
 * 1. the stored bytes still hash to what was committed;
 * 2. it is an expert checkpoint of exactly the run's architecture and the expert's objective and
 *    schedule, every tensor present with its shape, every value finite (`loadCheckpoint`);
 * 3. it says it was trained on this expert's shard (data fingerprint) for the target steps;
 * 4. its held-out denoising loss on the shard's validation split is below
 *    `validationLossRatio` x the loss of an untrained network (whose zero output makes that loss
 *    the mean squared target) on the very same noised batch;
 *
 * The same loss on every other cluster's validation split is recorded with the verdict (a
 * diagnostic: an expert fits its own cluster best only relative to how hard each cluster is — on
 * MNIST an honest expert of the 0s and 6s has a lower loss on the cluster of 1s than on its own —
 * so it is not a rejection rule).
 */
import { createHash } from 'node:crypto';
import { decodeShard, type ImageSet } from '@archipelago/data';
import {
  createObjective,
  heldOutObjective,
  type ObjectiveConfig,
  resolveObjective,
} from '@archipelago/diffusion';
import {
  architectureOf,
  CheckpointError,
  ditConfigFromPreset,
  resolveNetworkSpec,
  specOfMeta,
  type TrainableNetwork,
} from '@archipelago/models';
import { canonicalJson } from '@archipelago/protocol';
import type { ObjectStore } from '@archipelago/storage';
import * as tf from '@tensorflow/tfjs-core';
import { and, desc, eq, ne } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Db } from '../db/database.js';
import {
  type CheckpointRow,
  checkpoints,
  type ExpertRow,
  experts,
  type RunRow,
  runs,
  shards,
} from '../db/schema/index.js';
import { networkFromCheckpoint } from '../ensembles/network-from-checkpoint.js';
import { EVENTS, recordEvent } from '../lifecycle/events.js';
import { transitionExpert } from '../lifecycle/expert-lifecycle.js';
import { routeWhenExpertsDone } from '../lifecycle/pipeline.js';
import { checkStoredCheckpoint, deleteCheckpointObject } from './checkpoint-objects.js';

/** Noise draws per validation image (the loss depends strongly on t). */
const REPEATS = 4;
/** Rows per forward pass. */
const CHUNK = 128;

export interface ValidationDeps {
  db: Db;
  store: ObjectStore;
  log: Logger;
  lossRatio: number;
}

export interface ValidationPayload {
  expertId: string;
  checkpointId: string;
}

export interface ValidationOutcome {
  accepted: boolean;
  reason?: string;
  loss?: number;
  baseline?: number;
  /** Loss on each cluster's validation split, by cluster. */
  crossLoss?: (number | null)[];
}

/** What a run's experts are trained as: the DiT config of its preset for its dataset. */
export function expectedArchitecture(run: RunRow): Record<string, unknown> {
  const c = run.config;
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

/** Validate an expert's final checkpoint and record the verdict (one transaction). */
export async function validateCheckpoint(
  deps: ValidationDeps,
  payload: ValidationPayload,
  progress: (stage: string, done: number, total: number) => void = () => {},
): Promise<ValidationOutcome & { skipped?: boolean }> {
  const { db, store, log } = deps;
  const expert = db.select().from(experts).where(eq(experts.id, payload.expertId)).get();
  const ckpt = db.select().from(checkpoints).where(eq(checkpoints.id, payload.checkpointId)).get();
  if (!expert || !ckpt)
    throw new Error(`expert ${payload.expertId} or checkpoint ${payload.checkpointId} is gone`);
  // A stale job (the expert moved on, e.g. a retry after the verdict was written): nothing to do.
  if (expert.status !== 'validating' || expert.checkpointId !== ckpt.id) {
    return { accepted: expert.status === 'done', skipped: true };
  }
  const run = db.select().from(runs).where(eq(runs.id, expert.runId)).get()!;
  progress('checking the file', 0, 3);
  const outcome = await judge(deps, run, expert, ckpt, progress);
  log.info({ expert: expert.id, cluster: expert.cluster, ...outcome }, 'checkpoint validated');
  record(db, run, expert, ckpt, outcome);
  // Only its own object: nothing another checkpoint still names.
  if (!outcome.accepted) await deleteCheckpointObject(db, store, ckpt).catch(() => {});
  progress('done', 3, 3);
  return outcome;
}

async function judge(
  deps: ValidationDeps,
  run: RunRow,
  expert: ExpertRow,
  ckpt: CheckpointRow,
  progress: (stage: string, done: number, total: number) => void,
): Promise<ValidationOutcome> {
  const { db, store } = deps;
  // Its size and header first, no tensor data read: the whole file is only read once it can be a
  // checkpoint of this run's architecture (services/checkpoint-objects.ts).
  const refused = await checkStoredCheckpoint(store, run, expert, ckpt).catch(
    (err: unknown) =>
      `missing_object: the checkpoint object ${ckpt.key} cannot be read: ${(err as Error).message}`,
  );
  if (refused) return { accepted: false, reason: refused };
  let bytes: Uint8Array;
  try {
    bytes = await store.getBytes(ckpt.key);
  } catch (err) {
    return {
      accepted: false,
      reason: `the checkpoint object ${ckpt.key} cannot be read: ${(err as Error).message}`,
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
    const trainShard = expert.trainShardId
      ? db.select().from(shards).where(eq(shards.id, expert.trainShardId)).get()
      : undefined;
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
    progress('held-out loss', 1, 3);
    const valShards = db
      .select()
      .from(shards)
      .where(and(eq(shards.clusteringId, trainShard.clusteringId), eq(shards.split, 'val')))
      .all()
      .sort((a, b) => a.cluster - b.cluster);
    const crossLoss: (number | null)[] = [];
    let own: { loss: number; baseline: number } | null = null;
    for (const s of valShards) {
      if (s.count === 0) {
        crossLoss[s.cluster] = null;
        continue;
      }
      const set = await valSet(store, s.key, s.sha256);
      const r = heldOutLoss(net, objective, set, run.config.numClasses, run.config.seed + 1);
      await new Promise((resolve) => setImmediate(resolve));
      crossLoss[s.cluster] = r.loss;
      if (s.cluster === expert.cluster) own = r;
    }
    if (!own)
      return { accepted: false, reason: 'the expert has no validation images to check it on' };
    const bound = deps.lossRatio * own.baseline;
    const base = { loss: own.loss, baseline: own.baseline, crossLoss };
    if (!(own.loss < bound)) {
      return {
        ...base,
        accepted: false,
        reason: `loss_too_high: held-out loss ${own.loss.toFixed(4)} is not below ${bound.toFixed(4)} (${deps.lossRatio} x ${own.baseline.toFixed(4)}, an untrained network's loss)`,
      };
    }
    return { ...base, accepted: true };
  } finally {
    net.dispose();
  }
}

function record(
  db: Db,
  run: RunRow,
  expert: ExpertRow,
  ckpt: CheckpointRow,
  outcome: ValidationOutcome,
): void {
  db.transaction((tx) => {
    const now = new Date();
    if (outcome.accepted) {
      tx.update(checkpoints)
        .set({ validationLoss: outcome.loss ?? null })
        .where(eq(checkpoints.id, ckpt.id))
        .run();
      recordEvent(tx, EVENTS.expertValidated, {
        runId: run.id,
        expertId: expert.id,
        data: {
          checkpointId: ckpt.id,
          step: ckpt.step,
          loss: outcome.loss,
          baseline: outcome.baseline,
          crossLoss: outcome.crossLoss,
        },
      });
      transitionExpert(tx, expert.id, EVENTS.expertDone, {
        set: {
          validationLoss: outcome.loss ?? null,
          validationBaseline: outcome.baseline ?? null,
          validationError: null,
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
      },
      data: {
        checkpointId: ckpt.id,
        step: ckpt.step,
        reason: outcome.reason,
        loss: outcome.loss,
        baseline: outcome.baseline,
        crossLoss: outcome.crossLoss,
        resumeFrom: previous?.step ?? 0,
      },
    });
  });
}
