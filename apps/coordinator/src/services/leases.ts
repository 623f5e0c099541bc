import { initialisingFamilies } from '@archipelago/diffusion';
import {
  ANY_WORKER_FAMILY,
  type ExpertObjective,
  isCheckpointStep,
  type LeaseGrant,
  OBJECTIVES,
  type ObjectiveSpec,
  OPTIMIZER_STATE_PROTOCOL,
  specSummary,
} from '@archipelago/protocol';
import type { ObjectStore } from '@archipelago/storage';
import { and, asc, eq, gt, inArray, lt, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Db, Tx } from '../db/database.js';
import {
  type CheckpointRow,
  checkpoints,
  type ExpertRow,
  expertMetrics,
  experts,
  type LeaseRow,
  leases,
  runs,
  shards,
  workers,
} from '../db/schema/index.js';
import { DomainError } from '../errors.js';
import { specForFamily } from '../experts/objective-specs.js';
import { newId } from '../ids.js';
import { EVENTS, recordEvent } from '../lifecycle/events.js';
import {
  canTransitionExpert,
  LEASE_END_TRANSITIONS,
  transitionExpert,
} from '../lifecycle/expert-lifecycle.js';
import { validateFinalCheckpoint } from '../lifecycle/pipeline.js';
import { collectExpertCheckpoints } from './checkpoint-gc.js';
import {
  deleteCheckpointObject,
  optimizerSizeRefusal,
  optimizerUploadKey,
  sizeRefusal,
  storeOptimizerUpload,
  storeUpload,
  uploadKey,
} from './checkpoint-objects.js';
import { checkedResumePoint } from './resume-points.js';

export interface LeaseDeps {
  db: Db;
  store: ObjectStore;
  config: { leaseTtlMs: number; maxCheckpointBytes: number };
  log?: Logger;
}

/** Why a worker's lease request or lease message was refused; `code` goes into the error frame. */
export class LeaseError extends DomainError {
  constructor(
    override readonly code:
      | 'unknown_lease'
      | 'lease_expired'
      | 'invalid_message'
      | 'out_of_order'
      | 'stale_checkpoint_step'
      | 'checkpoint_step'
      | 'checkpoint_size'
      | 'lease_held'
      | 'lease_limit',
    message: string,
  ) {
    super(code, message);
    this.name = 'LeaseError';
  }
}

/** Presigned GET URLs handed to workers live this long: enough to download a shard. */
const URL_TTL_SECONDS = 3600;
/**
 * A checkpoint's PUT URL lives this long (the worker PUTs right after `checkpoint.begin`). With the
 * local store it also dies with its upload (its lease ended, it was committed or superseded).
 */
export const UPLOAD_URL_TTL_SECONDS = 600;

/** Which expert objectives a worker with `objective` may train. */
function compatible(objective: ExpertObjective): ExpertObjective[] {
  return objective === 'any' ? [...OBJECTIVES, 'any'] : [objective, 'any'];
}

/**
 * The oldest-waiting pending expert this worker can train, leased to it in one transaction. The
 * partial unique index on active leases makes a double lease impossible even across processes.
 * An `any` expert takes the worker's family (ANY_WORKER_FAMILY for an `any` worker), completed
 * with the run's defaults, as its spec for good.
 */
export function tryLease(
  db: Db,
  workerId: string,
  workerObjective: ExpertObjective,
  ttlMs: number,
  maxLeasesPerToken = Number.POSITIVE_INFINITY,
): {
  lease: LeaseRow;
  expert: ExpertRow;
  /** The expert was leased before (and went back to the pool); every grant stamps lastHeartbeatAt. */
  regrant: boolean;
} | null {
  return db.transaction((tx) => {
    // One lease at a time: a worker cannot hoard experts by asking again while it trains one.
    const held = tx
      .select({ id: leases.id })
      .from(leases)
      .where(
        and(
          eq(leases.workerId, workerId),
          eq(leases.status, 'active'),
          gt(leases.expiresAt, new Date()),
        ),
      )
      .get();
    if (held) {
      throw new LeaseError(
        'lease_held',
        `this worker already holds lease ${held.id}; finish or release it before asking for another`,
      );
    }
    // Nor by opening many workers on one token: its workers' active leases are capped together.
    const me = tx
      .select({ tokenId: workers.tokenId })
      .from(workers)
      .where(eq(workers.id, workerId))
      .get();
    const sameToken = tx
      .select({ id: workers.id })
      .from(workers)
      .where(eq(workers.tokenId, me?.tokenId ?? ''));
    const { n } = tx
      .select({ n: sql<number>`count(*)` })
      .from(leases)
      .where(
        and(
          inArray(leases.workerId, sameToken),
          eq(leases.status, 'active'),
          gt(leases.expiresAt, new Date()),
        ),
      )
      .get()!;
    if (n >= maxLeasesPerToken) {
      throw new LeaseError(
        'lease_limit',
        `this worker's token already holds ${n} active leases, the most a token may hold; finish one first`,
      );
    }
    const candidates = tx
      .select({ expert: experts, run: runs })
      .from(experts)
      .innerJoin(runs, eq(runs.id, experts.runId))
      .where(
        and(
          eq(experts.status, 'pending'),
          eq(runs.status, 'training'),
          inArray(experts.objective, compatible(workerObjective)),
          sql`${experts.trainShardId} is not null`,
        ),
      )
      .orderBy(asc(runs.createdAt), asc(experts.updatedAt), asc(experts.cluster))
      .limit(50)
      .all();
    for (const { expert, run } of candidates) {
      const spec: ObjectiveSpec =
        expert.spec ??
        specForFamily(workerObjective === 'any' ? ANY_WORKER_FAMILY : workerObjective, run.config);
      const { objective, schedule } = specSummary(spec);
      // An expert initialised from another family's checkpoint (FM from DDPM, docs/method.md §7)
      // starts from the organiser's donor (`initFrom`, checked finished when the run was made), or
      // waits until an expert of that family in its own run is done (`initFmFromDdpm`).
      const fixed = run.config.initFrom;
      const donorFamilies = run.config.initFmFromDdpm || fixed ? initialisingFamilies(spec) : [];
      const needsDonor = donorFamilies.length > 0 && !expert.checkpointId;
      const donor = !needsDonor
        ? undefined
        : fixed
          ? tx.select().from(experts).where(eq(experts.id, fixed.expertId)).get()
          : initDonor(tx, run.id, donorFamilies);
      if (needsDonor && !donor) continue;
      const now = new Date();
      const lease = tx
        .insert(leases)
        .values({
          id: newId('lease'),
          expertId: expert.id,
          workerId,
          status: 'active',
          startStep: expert.checkpointStep ?? 0,
          lastStep: expert.checkpointStep ?? 0,
          grantedAt: now,
          expiresAt: new Date(now.getTime() + ttlMs),
        })
        .returning()
        .get();
      transitionExpert(tx, expert.id, EVENTS.leaseGranted, {
        workerId,
        data: { leaseId: lease.id, objective, fromStep: lease.startStep },
      });
      const updated = tx
        .update(experts)
        .set({
          workerId,
          objective,
          schedule: schedule ?? null,
          spec,
          lastHeartbeatAt: now,
          initFromExpertId: donor?.id ?? expert.initFromExpertId,
        })
        .where(eq(experts.id, expert.id))
        .returning()
        .get();
      return { lease, expert: updated, regrant: expert.lastHeartbeatAt !== null };
    }
    return null;
  });
}

/** The first finished expert of the run in one of `families`, whose checkpoint initialises another. */
function initDonor(
  tx: Tx,
  runId: string,
  families: readonly ExpertObjective[],
): ExpertRow | undefined {
  return tx
    .select()
    .from(experts)
    .where(
      and(
        eq(experts.runId, runId),
        inArray(experts.objective, [...families]),
        eq(experts.status, 'done'),
      ),
    )
    .orderBy(asc(experts.cluster))
    .get();
}

async function objectRef(store: ObjectStore, key: string, sha256: string, bytes: number) {
  // With the local store the URL also refuses to serve bytes of another sha256.
  const { url, expiresAt } = await store.presignGet(key, { ttlSeconds: URL_TTL_SECONDS, sha256 });
  return { url, sha256, bytes, expiresAt: expiresAt.toISOString() };
}

/**
 * Everything the worker needs for this lease, with presigned URLs for the shard and the resume
 * point (and its optimiser state, for a worker speaking `protocol` 2 or later).
 */
export async function buildGrant(
  deps: LeaseDeps,
  lease: LeaseRow,
  expert: ExpertRow,
  protocol = 1,
): Promise<LeaseGrant> {
  const { db, store } = deps;
  const run = db.select().from(runs).where(eq(runs.id, expert.runId)).get()!;
  const train = db.select().from(shards).where(eq(shards.id, expert.trainShardId!)).get()!;
  const val = expert.valShardId
    ? db.select().from(shards).where(eq(shards.id, expert.valShardId)).get()
    : undefined;
  // Checked before this worker continues from it; a resume point that fails falls back.
  const resume = await checkedResumePoint(deps, lease, expert);
  const donor =
    !resume && expert.initFromExpertId
      ? db.select().from(experts).where(eq(experts.id, expert.initFromExpertId)).get()
      : undefined;
  const donorCkpt = donor?.checkpointId
    ? db.select().from(checkpoints).where(eq(checkpoints.id, donor.checkpointId)).get()
    : undefined;
  const c = run.config;
  return {
    type: 'lease.grant',
    leaseId: lease.id,
    expert: { id: expert.id, runId: run.id, cluster: expert.cluster },
    // tryLease stored the spec of every leased expert.
    spec: expert.spec!,
    ...specSummary(expert.spec!),
    // The held-out split stays on the coordinator: it is what the expert is judged on.
    shard: {
      train: await objectRef(store, train.key, train.sha256, train.bytes),
      count: train.count,
      valCount: val?.count ?? 0,
    },
    model: {
      preset: c.model,
      imageSize: c.resolution,
      channels: c.channels,
      numClasses: c.numClasses,
      ...(c.patchSize !== undefined ? { patchSize: c.patchSize } : {}),
    },
    training: {
      targetSteps: expert.targetSteps,
      checkpointInterval: c.checkpointInterval,
      batchSize: c.batchSize,
      learningRate: c.learningRate,
      seed: c.seed * 1000 + expert.cluster,
    },
    ...(resume
      ? {
          resumeFrom: {
            checkpoint: await objectRef(store, resume.key, resume.sha256, resume.bytes),
            step: resume.step,
            ...(resume.optimizerKey && protocol >= OPTIMIZER_STATE_PROTOCOL
              ? {
                  optimizer: await objectRef(
                    store,
                    resume.optimizerKey,
                    resume.optimizerSha256!,
                    resume.optimizerBytes!,
                  ),
                }
              : {}),
          },
        }
      : {}),
    ...(donorCkpt
      ? {
          initFrom: {
            checkpoint: await objectRef(store, donorCkpt.key, donorCkpt.sha256, donorCkpt.bytes),
            objective: donor!.spec!.name,
          },
        }
      : {}),
  };
}

/** The worker's active lease, or the reason it has none. */
function activeLease(
  tx: Tx,
  leaseId: string,
  workerId: string,
): { lease: LeaseRow; expert: ExpertRow } {
  const lease = tx.select().from(leases).where(eq(leases.id, leaseId)).get();
  if (!lease || lease.workerId !== workerId)
    throw new LeaseError('unknown_lease', `lease ${leaseId} is not held by this worker`);
  if (lease.status !== 'active')
    throw new LeaseError('lease_expired', `lease ${leaseId} is ${lease.status}; request a new one`);
  if (lease.expiresAt.getTime() < Date.now())
    throw new LeaseError(
      'lease_expired',
      `lease ${leaseId} expired at ${lease.expiresAt.toISOString()}`,
    );
  const expert = tx.select().from(experts).where(eq(experts.id, lease.expertId)).get()!;
  return { lease, expert };
}

/**
 * Renew a lease and record progress. A paused heartbeat's deadline is the pause's start plus
 * `pausedGraceMs` (services/lease-renewals.ts); an unpaused one's, `now + ttlMs`.
 */
export function heartbeat(
  db: Db,
  ttlMs: number,
  workerId: string,
  hb: {
    leaseId: string;
    step: number;
    loss: number | null;
    imagesPerSec: number;
    paused?: boolean;
  },
  pausedGraceMs: number,
): Date {
  return db.transaction((tx) => {
    const { lease, expert } = activeLease(tx, hb.leaseId, workerId);
    if (hb.step < lease.startStep || hb.step > expert.targetSteps) {
      throw new LeaseError(
        'invalid_message',
        `heartbeat step ${hb.step} is outside this lease's range [${lease.startStep}, ${expert.targetSteps}]`,
      );
    }
    const now = new Date();
    const pausedAt = hb.paused ? (lease.pausedAt ?? now) : null;
    const expiresAt = new Date(
      pausedAt === null ? now.getTime() + ttlMs : pausedAt.getTime() + pausedGraceMs,
    );
    tx.update(leases)
      .set({ expiresAt, lastStep: hb.step, pausedAt })
      .where(eq(leases.id, lease.id))
      .run();
    if (expert.status === 'leased') {
      transitionExpert(tx, expert.id, EVENTS.expertTraining, {
        workerId,
        data: { leaseId: lease.id, step: hb.step },
      });
    }
    tx.update(experts)
      .set({
        step: hb.step,
        loss: hb.loss !== null && Number.isFinite(hb.loss) ? hb.loss : expert.loss,
        imagesPerSec: hb.imagesPerSec,
        lastHeartbeatAt: now,
      })
      .where(eq(experts.id, expert.id))
      .run();
    // The training curve: one point per heartbeat that moved the step on.
    if (hb.loss !== null && Number.isFinite(hb.loss) && hb.step !== expert.step) {
      tx.insert(expertMetrics)
        .values({
          expertId: expert.id,
          runId: expert.runId,
          step: hb.step,
          loss: hb.loss,
          imagesPerSec: hb.imagesPerSec,
          at: now,
        })
        .run();
    }
    return expiresAt;
  });
}

/** End a lease early; its expert returns to the pool at its last accepted checkpoint. */
export function endLease(
  tx: Tx,
  lease: LeaseRow,
  status: 'released' | 'expired' | 'revoked',
  reason: string,
): void {
  tx.update(leases).set({ status, endedAt: new Date() }).where(eq(leases.id, lease.id)).run();
  const expert = tx.select().from(experts).where(eq(experts.id, lease.expertId)).get()!;
  // A validating or done expert finished with this lease already: it stays where it is.
  const transition = LEASE_END_TRANSITIONS[status];
  if (!canTransitionExpert(expert.status, transition)) return;
  transitionExpert(tx, expert.id, transition, {
    set: { workerId: null, step: expert.checkpointStep ?? 0, imagesPerSec: null },
    workerId: lease.workerId,
    data: { leaseId: lease.id, reason, resumeStep: expert.checkpointStep ?? 0 },
  });
}

export function releaseLease(db: Db, workerId: string, leaseId: string, reason: string): void {
  db.transaction((tx) => {
    const { lease } = activeLease(tx, leaseId, workerId);
    endLease(tx, lease, 'released', reason);
  });
}

/** Expire every active lease past its deadline; returns them (to notify connected workers). */
export function expireLeases(
  db: Db,
  now = new Date(),
  /** A deadline acknowledged but not yet written (services/lease-renewals.ts), if any. */
  promised: (leaseId: string) => number | undefined = () => undefined,
): LeaseRow[] {
  return db.transaction((tx) => {
    const due = tx
      .select()
      .from(leases)
      .where(and(eq(leases.status, 'active'), lt(leases.expiresAt, now)))
      .all()
      .filter((lease) => (promised(lease.id) ?? 0) < now.getTime());
    for (const lease of due) {
      // The deadline its last ack promised, when that was not written yet: the lease's record
      // says when it really ran out, whenever the next flush would have come.
      const acked = promised(lease.id);
      if (acked !== undefined && acked > lease.expiresAt.getTime()) {
        lease.expiresAt = new Date(acked);
        tx.update(leases).set({ expiresAt: lease.expiresAt }).where(eq(leases.id, lease.id)).run();
      }
      endLease(
        tx,
        lease,
        'expired',
        lease.pausedAt
          ? `paused since ${lease.pausedAt.toISOString()}, past the paused-lease grace`
          : `no heartbeat since ${new Date(lease.expiresAt.getTime()).toISOString()}`,
      );
    }
    return due;
  });
}

/** Revoke every active lease of a set of workers (their token was revoked). */
export function revokeWorkerLeases(db: Db, workerIds: string[], reason: string): LeaseRow[] {
  if (workerIds.length === 0) return [];
  return db.transaction((tx) => {
    const active = tx
      .select()
      .from(leases)
      .where(and(eq(leases.status, 'active'), inArray(leases.workerId, workerIds)))
      .all();
    for (const lease of active) endLease(tx, lease, 'revoked', reason);
    return active;
  });
}

/**
 * Register an upload: a checkpoint row, an object key of its own and a short-lived, create-only
 * presigned PUT URL for it. The step must be after the last accepted one, at most the target,
 * final exactly at the target, and a multiple of the checkpoint interval otherwise; the size must
 * be one a checkpoint of the run's architecture can have (and an announced optimiser state's, one
 * such a checkpoint's state can have: it gets a second URL). A lease has one open upload at a
 * time: a new begin closes the previous one (its objects are deleted, its URLs refused).
 */
export async function beginCheckpoint(
  deps: LeaseDeps,
  workerId: string,
  msg: {
    leaseId: string;
    step: number;
    bytes: number;
    sha256: string;
    final: boolean;
    optimizer?: { bytes: number; sha256: string };
  },
) {
  const { db, store, config } = deps;
  if (msg.bytes > config.maxCheckpointBytes) {
    throw new LeaseError(
      'checkpoint_size',
      `checkpoint of ${msg.bytes} bytes exceeds the limit of ${config.maxCheckpointBytes}`,
    );
  }
  const { row, expert, closed } = db.transaction((tx) => {
    const { lease, expert } = activeLease(tx, msg.leaseId, workerId);
    if (msg.step > expert.targetSteps)
      throw new LeaseError(
        'invalid_message',
        `step ${msg.step} is past the target of ${expert.targetSteps}`,
      );
    if (!msg.final && msg.step === expert.targetSteps) {
      // Accepted, it would leave the expert no valid step: the target is the final checkpoint's.
      throw new LeaseError(
        'invalid_message',
        `a checkpoint at the target step ${expert.targetSteps} must be the final one`,
      );
    }
    if (msg.final && msg.step !== expert.targetSteps) {
      throw new LeaseError(
        'invalid_message',
        `a final checkpoint must be at step ${expert.targetSteps}, not ${msg.step}`,
      );
    }
    if (expert.checkpointStep !== null && msg.step <= expert.checkpointStep) {
      throw new LeaseError(
        'stale_checkpoint_step',
        `step ${msg.step} is not after the last accepted checkpoint (step ${expert.checkpointStep})`,
      );
    }
    const run = tx.select().from(runs).where(eq(runs.id, expert.runId)).get()!;
    const interval = run.config.checkpointInterval;
    if (!isCheckpointStep(msg.step, interval, expert.targetSteps)) {
      throw new LeaseError(
        'checkpoint_step',
        `step ${msg.step} is neither a multiple of the checkpoint interval (${interval}) nor the target (${expert.targetSteps})`,
      );
    }
    const tooBig = sizeRefusal(run, msg.bytes);
    if (tooBig) throw new LeaseError('checkpoint_size', tooBig);
    const stateTooBig = msg.optimizer && optimizerSizeRefusal(run, msg.optimizer.bytes);
    if (stateTooBig) throw new LeaseError('checkpoint_size', stateTooBig);
    const open = tx
      .update(checkpoints)
      .set({
        status: 'rejected',
        reason: `superseded: the lease began another upload (step ${msg.step})`,
        decidedAt: new Date(),
      })
      .where(and(eq(checkpoints.leaseId, lease.id), eq(checkpoints.status, 'uploading')))
      .returning()
      .all();
    const id = newId('checkpoint');
    const inserted = tx
      .insert(checkpoints)
      .values({
        id,
        expertId: expert.id,
        leaseId: lease.id,
        step: msg.step,
        key: uploadKey(id),
        sha256: msg.sha256,
        bytes: msg.bytes,
        final: msg.final,
        ...(msg.optimizer
          ? {
              optimizerKey: optimizerUploadKey(id),
              optimizerSha256: msg.optimizer.sha256,
              optimizerBytes: msg.optimizer.bytes,
            }
          : {}),
        status: 'uploading',
      })
      .returning()
      .get();
    return { row: inserted, expert, closed: open };
  });
  for (const c of closed) await deleteCheckpointObject(db, store, c);
  const put = await store.presignPut(row.key, {
    ttlSeconds: UPLOAD_URL_TTL_SECONDS,
    bytes: row.bytes,
    sha256: row.sha256,
    createOnly: true,
  });
  const statePut = row.optimizerKey
    ? await store.presignPut(row.optimizerKey, {
        ttlSeconds: UPLOAD_URL_TTL_SECONDS,
        bytes: row.optimizerBytes!,
        sha256: row.optimizerSha256!,
        createOnly: true,
      })
    : null;
  return {
    checkpoint: row,
    expert,
    putUrl: put.url,
    headers: put.headers,
    expiresAt: put.expiresAt,
    ...(statePut ? { optimizer: { putUrl: statePut.url, headers: statePut.headers } } : {}),
  };
}

export type CommitResult =
  | {
      accepted: true;
      checkpoint: CheckpointRow;
      expertDone: boolean;
      runId: string;
      /** The validation job of a final checkpoint, to dispatch. */
      validationJobId?: string;
    }
  | { accepted: false; checkpoint: CheckpointRow; reason: string };

/** Close an upload that will not be accepted; its own object goes. */
async function rejectUpload(
  deps: LeaseDeps,
  workerId: string,
  ckpt: CheckpointRow,
  reason: string,
): Promise<CheckpointRow> {
  const { db, store } = deps;
  const rejected = db.transaction((tx) => {
    const updated = tx
      .update(checkpoints)
      .set({ status: 'rejected', reason, decidedAt: new Date() })
      .where(and(eq(checkpoints.id, ckpt.id), eq(checkpoints.status, 'uploading')))
      .returning()
      .get();
    const expert = tx.select().from(experts).where(eq(experts.id, ckpt.expertId)).get()!;
    recordEvent(tx, EVENTS.checkpointRejected, {
      runId: expert.runId,
      expertId: expert.id,
      workerId,
      data: { checkpointId: ckpt.id, step: ckpt.step, reason },
    });
    return updated ?? { ...ckpt, status: 'rejected' as const, reason };
  });
  await deleteCheckpointObject(db, store, ckpt).catch(() => {});
  return rejected;
}

/**
 * Verify an uploaded checkpoint (present, the announced size, a header of the run's architecture,
 * the sha256 of the stored bytes), copy it to its content-addressed key and make it the expert's
 * resume point. A rejected upload deletes only its own object; the previous resume point stays.
 * A commit at a step another upload was accepted at meanwhile is refused (stale_checkpoint_step).
 */
export async function commitCheckpoint(
  deps: LeaseDeps,
  workerId: string,
  leaseId: string,
  checkpointId: string,
): Promise<CommitResult> {
  const { db, store } = deps;
  const { ckpt, expert, run } = db.transaction((tx) => {
    const { expert } = activeLease(tx, leaseId, workerId);
    const row = tx.select().from(checkpoints).where(eq(checkpoints.id, checkpointId)).get();
    if (!row || row.leaseId !== leaseId)
      throw new LeaseError(
        'unknown_lease',
        `checkpoint ${checkpointId} does not belong to lease ${leaseId}`,
      );
    if (row.status !== 'uploading')
      throw new LeaseError('out_of_order', `checkpoint ${checkpointId} was already ${row.status}`);
    const run = tx.select().from(runs).where(eq(runs.id, expert.runId)).get()!;
    return { ckpt: row, expert, run };
  });
  const stale = (step: number | null) =>
    step !== null && ckpt.step <= step
      ? `stale_checkpoint_step: step ${ckpt.step} is not after the accepted checkpoint of step ${step}`
      : null;
  const early = stale(expert.checkpointStep);
  if (early) {
    await rejectUpload(deps, workerId, ckpt, early);
    throw new LeaseError('stale_checkpoint_step', early);
  }
  const stored = await storeUpload(store, run, expert, ckpt);
  if (!stored.ok) {
    const rejected = await rejectUpload(deps, workerId, ckpt, stored.reason);
    return { accepted: false, checkpoint: rejected, reason: stored.reason };
  }
  const contentKey = stored.key;
  // The optimiser state is part of the checkpoint: a bad one rejects both.
  const state = ckpt.optimizerKey ? await storeOptimizerUpload(store, run, expert, ckpt) : null;
  if (state && !state.ok) {
    await deleteCheckpointObject(db, store, { id: ckpt.id, key: contentKey }).catch(() => {});
    const rejected = await rejectUpload(deps, workerId, ckpt, state.reason);
    return { accepted: false, checkpoint: rejected, reason: state.reason };
  }
  const stateKey = state?.ok ? state.key : null;
  const copies = { id: ckpt.id, key: contentKey, optimizerKey: stateKey };
  let result: CommitResult | { stale: string };
  try {
    result = db.transaction((tx) => {
      const { lease, expert } = activeLease(tx, leaseId, workerId);
      const late = stale(expert.checkpointStep);
      if (late) return { stale: late };
      const accepted = tx
        .update(checkpoints)
        .set({
          status: 'accepted',
          key: contentKey,
          ...(stateKey ? { optimizerKey: stateKey } : {}),
          decidedAt: new Date(),
        })
        .where(eq(checkpoints.id, ckpt.id))
        .returning()
        .get();
      // The final checkpoint is only a candidate: the coordinator validates it (a job) before the
      // expert is done; until then the expert is `validating` and nobody leases it.
      const done = ckpt.final && ckpt.step >= expert.targetSteps;
      tx.update(experts)
        .set({
          checkpointId: ckpt.id,
          checkpointStep: ckpt.step,
          step: Math.max(expert.step, ckpt.step),
        })
        .where(eq(experts.id, expert.id))
        .run();
      recordEvent(tx, EVENTS.checkpointAccepted, {
        runId: expert.runId,
        expertId: expert.id,
        workerId,
        data: { checkpointId: ckpt.id, step: ckpt.step, bytes: ckpt.bytes, sha256: ckpt.sha256 },
      });
      let validationJobId: string | undefined;
      if (done) {
        tx.update(leases)
          .set({ status: 'completed', endedAt: new Date(), lastStep: ckpt.step })
          .where(eq(leases.id, lease.id))
          .run();
        transitionExpert(tx, expert.id, EVENTS.expertValidating, {
          set: { workerId: null, imagesPerSec: null },
          workerId,
          data: { step: ckpt.step, checkpointId: ckpt.id },
        });
        validationJobId = validateFinalCheckpoint(tx, expert, ckpt.id).id;
      }
      return {
        accepted: true as const,
        checkpoint: accepted,
        expertDone: done,
        runId: expert.runId,
        ...(validationJobId ? { validationJobId } : {}),
      };
    });
  } catch (err) {
    // The lease ended while the upload was checked: the copy is nobody's.
    await deleteCheckpointObject(db, store, copies).catch(() => {});
    throw err;
  }
  if ('stale' in result) {
    await deleteCheckpointObject(db, store, copies).catch(() => {});
    await rejectUpload(deps, workerId, ckpt, result.stale);
    throw new LeaseError('stale_checkpoint_step', result.stale);
  }
  await store.delete(ckpt.key).catch(() => {});
  if (ckpt.optimizerKey) await store.delete(ckpt.optimizerKey).catch(() => {});
  await collectExpertCheckpoints(deps, ckpt.expertId).catch((err: unknown) =>
    deps.log?.warn({ err, expert: ckpt.expertId }, 'checkpoint collection failed'),
  );
  return result;
}

/** The worker says its lease is finished: fine once its final checkpoint was accepted. */
export function confirmComplete(
  db: Db,
  workerId: string,
  leaseId: string,
  checkpointId: string,
): void {
  const lease = db.select().from(leases).where(eq(leases.id, leaseId)).get();
  if (!lease || lease.workerId !== workerId)
    throw new LeaseError('unknown_lease', `lease ${leaseId} is not held by this worker`);
  const ckpt = db.select().from(checkpoints).where(eq(checkpoints.id, checkpointId)).get();
  if (
    lease.status !== 'completed' ||
    !ckpt ||
    ckpt.leaseId !== leaseId ||
    ckpt.status !== 'accepted' ||
    !ckpt.final
  ) {
    throw new LeaseError(
      'out_of_order',
      `lease ${leaseId} is not complete: commit its final checkpoint first`,
    );
  }
}
