/**
 * Resume points are checked before another worker continues from them (docs/method.md §12): a
 * non-final checkpoint one volunteer uploaded is handed to the next only once the coordinator has
 * loaded it itself (the stored bytes hash to what was committed; exactly the run's architecture,
 * every tensor present with its shape and finite; trained as the expert's objective, on its
 * shard, for the step it was committed at) and measured its held-out loss on data no worker has
 * seen, with fresh secret noise: over a zero-output network's on the same draws, it may not be
 * worse than the last checked point's, measured again on those very draws (a paired comparison),
 * by more than RESUME_LOSS_MARGIN (nor, for the first, than an untrained network's). A checkpoint that fails is rejected, and the lease resumes from the
 * newest one that passed, or from scratch.
 */
import { createHash, randomInt } from 'node:crypto';
import { decodeShard } from '@archipelago/data';
import { heldOutObjective, type ObjectiveConfig, resolveObjective } from '@archipelago/diffusion';
import { CheckpointError, specOfMeta } from '@archipelago/models';
import { canonicalJson } from '@archipelago/protocol';
import { ObjectNotFoundError, type ObjectStore } from '@archipelago/storage';
import { and, asc, eq } from 'drizzle-orm';
import type { Db } from '../db/database.js';
import {
  type CheckpointRow,
  checkpoints,
  type ExpertRow,
  experts,
  type LeaseRow,
  leases,
  type RunRow,
  runs,
  shards,
} from '../db/schema/index.js';
import { networkFromCheckpoint } from '../ensembles/network-from-checkpoint.js';
import { EVENTS, recordEvent, stateChanged } from '../lifecycle/events.js';
import { deleteCheckpointObject } from './checkpoint-objects.js';
import { expectedArchitecture, heldOutLoss, objectiveConfigOf } from './validation.js';

/**
 * How much worse (relative) a resume point's held-out loss ratio may be than the last checked
 * one's: room for the noise of a fresh draw on a small held-out split, not for a step backwards.
 */
export const RESUME_LOSS_MARGIN = 0.25;

export interface ResumeDeps {
  db: Db;
  store: ObjectStore;
}

/**
 * Check the expert's unchecked resume points up to its current one, oldest first, and return the
 * newest that passed (undefined: from scratch). When that is not the expert's current resume
 * point, the expert and `lease` (just granted, not yet sent) move back to it.
 */
export async function checkedResumePoint(
  deps: ResumeDeps,
  lease: LeaseRow,
  expert: ExpertRow,
): Promise<CheckpointRow | undefined> {
  const { db } = deps;
  if (!expert.checkpointId || expert.checkpointStep === null) return undefined;
  const candidates = db
    .select()
    .from(checkpoints)
    .where(
      and(
        eq(checkpoints.expertId, expert.id),
        eq(checkpoints.status, 'accepted'),
        eq(checkpoints.final, false),
      ),
    )
    .orderBy(asc(checkpoints.step))
    .all()
    .filter((c) => c.step <= expert.checkpointStep!);
  let passed: CheckpointRow | undefined;
  for (const c of candidates) {
    if (c.resumeCheckedAt !== null) {
      passed = c;
      continue;
    }
    const verdict = await checkResumePoint(deps, expert, c, passed);
    if (typeof verdict === 'number') {
      passed = db
        .update(checkpoints)
        .set({ resumeLossRatio: verdict, resumeCheckedAt: new Date() })
        .where(eq(checkpoints.id, c.id))
        .returning()
        .get();
    } else {
      reject(db, expert, lease, c, verdict);
      await deleteCheckpointObject(db, deps.store, c).catch(() => {});
    }
  }
  if (passed?.id !== expert.checkpointId) moveBack(db, expert, lease, passed);
  return passed;
}

/**
 * The held-out loss ratio of checkpoint `c` (loss over a zero-output network's on the same fresh
 * draws) when it passes as a resume point, else why not (a stable code, then the numbers).
 */
async function checkResumePoint(
  deps: ResumeDeps,
  expert: ExpertRow,
  c: CheckpointRow,
  previous: CheckpointRow | undefined,
): Promise<number | string> {
  const { db, store } = deps;
  const run = db.select().from(runs).where(eq(runs.id, expert.runId)).get()!;
  let bytes: Uint8Array;
  try {
    bytes = await store.getBytes(c.key);
  } catch (err) {
    // Only an object that is not there is a verdict; a store that fails or stalls says nothing
    // about the checkpoint (thrown: the grant is given back and asked for again). Found by the
    // chaos run: a store's 500 here rejected, and deleted, an accepted checkpoint.
    if (err instanceof ObjectNotFoundError) return `missing_object: ${c.key} does not exist`;
    throw err;
  }
  const sha = createHash('sha256').update(bytes).digest('hex');
  if (sha !== c.sha256)
    return `sha256_mismatch: the stored bytes hash to ${sha}, committed as ${c.sha256}`;
  let loaded: ReturnType<typeof networkFromCheckpoint>;
  try {
    loaded = networkFromCheckpoint(bytes, {
      kind: 'expert',
      architecture: expectedArchitecture(run),
      objective: expert.objective as ObjectiveConfig['name'],
    });
  } catch (err) {
    const code = err instanceof CheckpointError ? `${err.code}: ` : 'bad_checkpoint: ';
    return `${code}${(err as Error).message}`;
  }
  const { meta, net } = loaded;
  try {
    const objective = objectiveConfigOf(expert);
    let trained: string;
    try {
      trained = canonicalJson(heldOutObjective(specOfMeta(meta)));
    } catch (err) {
      return `config_mismatch: ${(err as Error).message}`;
    }
    const wanted = canonicalJson(
      heldOutObjective(resolveObjective(expert.spec as ObjectiveConfig)),
    );
    if (trained !== wanted)
      return `config_mismatch: the checkpoint was trained as ${trained}, the expert is ${wanted}`;
    const train = db.select().from(shards).where(eq(shards.id, expert.trainShardId!)).get()!;
    if (meta.dataFingerprint !== train.sha256)
      return `wrong_shard: the checkpoint was trained on data ${String(meta.dataFingerprint).slice(0, 12)}, this expert's shard is ${train.sha256.slice(0, 12)}`;
    if (meta.step !== c.step)
      return `bad_header: the checkpoint says step ${meta.step}, committed at ${c.step}`;
    const val = expert.valShardId
      ? db.select().from(shards).where(eq(shards.id, expert.valShardId)).get()
      : undefined;
    // Nothing held out to measure on: the file checks are all there is.
    if (!val || val.count === 0) return 1;
    const set = decodeShard(await store.getBytes(val.key), { file: val.key });
    // One fresh secret seed for the candidate and the point it is compared with: the comparison is
    // paired (the same images, noise and times), so the draw's own noise cancels out.
    const seed = randomInt(1, 2 ** 31 - 1);
    const ratioOf = (n: typeof net) => {
      const { loss, baseline } = heldOutLoss(n, objective, set, run.config.numClasses, seed);
      return loss / baseline;
    };
    const ratio = ratioOf(net);
    // Against the last checked point on these draws (or, for the first, an untrained network's
    // zero output, whose ratio is 1 by definition).
    const bound = previous ? await previousRatio(deps, run, expert, previous, ratioOf) : 1;
    const limit = bound * (1 + RESUME_LOSS_MARGIN);
    if (!(ratio <= limit)) {
      return `loss_regressed: held-out loss ${ratio.toFixed(4)} x an untrained network's, the last checked point's is ${bound.toFixed(4)} x on the same draws (at most ${limit.toFixed(4)} allowed)`;
    }
    return ratio;
  } finally {
    net.dispose();
  }
}

/**
 * The held-out loss ratio of the last checked resume point on the candidate's draws; its ratio
 * from its own check when its object can no longer be loaded.
 */
async function previousRatio(
  deps: ResumeDeps,
  run: RunRow,
  expert: ExpertRow,
  previous: CheckpointRow,
  ratioOf: (net: ReturnType<typeof networkFromCheckpoint>['net']) => number,
): Promise<number> {
  try {
    const bytes = await deps.store.getBytes(previous.key);
    if (createHash('sha256').update(bytes).digest('hex') !== previous.sha256)
      throw new Error('hash');
    const { net } = networkFromCheckpoint(bytes, {
      kind: 'expert',
      architecture: expectedArchitecture(run),
      objective: expert.objective as ObjectiveConfig['name'],
    });
    try {
      return ratioOf(net);
    } finally {
      net.dispose();
    }
  } catch {
    return previous.resumeLossRatio ?? 1;
  }
}

function reject(db: Db, expert: ExpertRow, lease: LeaseRow, c: CheckpointRow, reason: string) {
  db.transaction((tx) => {
    tx.update(checkpoints)
      .set({ status: 'rejected', reason: `resume check: ${reason}`, decidedAt: new Date() })
      .where(and(eq(checkpoints.id, c.id), eq(checkpoints.status, 'accepted')))
      .run();
    recordEvent(tx, EVENTS.checkpointRejected, {
      runId: expert.runId,
      expertId: expert.id,
      data: { checkpointId: c.id, step: c.step, reason, resumeCheck: true, leaseId: lease.id },
    });
  });
}

/** The expert, and the lease just granted on it, continue from `to` (undefined: step 0). */
function moveBack(db: Db, expert: ExpertRow, lease: LeaseRow, to: CheckpointRow | undefined) {
  const step = to?.step ?? 0;
  db.transaction((tx) => {
    tx.update(experts)
      .set({ checkpointId: to?.id ?? null, checkpointStep: to?.step ?? null, step })
      .where(eq(experts.id, expert.id))
      .run();
    tx.update(leases).set({ startStep: step, lastStep: step }).where(eq(leases.id, lease.id)).run();
    stateChanged();
  });
  Object.assign(expert, { checkpointId: to?.id ?? null, checkpointStep: to?.step ?? null, step });
  Object.assign(lease, { startStep: step, lastStep: step });
}
