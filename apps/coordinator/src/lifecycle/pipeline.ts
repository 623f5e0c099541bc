/**
 * The pipeline: which job follows which outcome. This module is the only place that queues a
 * follow-up job.
 *
 * | outcome                                        | follow-up                                   |
 * | ---------------------------------------------- | ------------------------------------------- |
 * | run created without a clustering               | `cluster-dataset` (binds the run: training) |
 * | an expert's final checkpoint accepted          | `validate-checkpoint`                       |
 * | final checkpoint rejected by validation        | none: the expert is pending again           |
 * | checkpoint validated, every expert of run done | run -> routing, `train-router`              |
 * | router trained, run routing or published       | `publish-ensemble` (run -> published)       |
 * | a new ensemble published, scoring possible     | `score-ensemble` (score.json, score.png)    |
 * | a job of the run failed for good               | run -> failed (a published run stays)       |
 *
 * A follow-up's row is inserted in the transaction that records the outcome, so both commit or
 * neither does; whoever committed dispatches it (a {@link JobDispatcher}), and the job queue
 * dispatches whatever is still queued after a job finishes or the coordinator restarts.
 */
import type { JobName } from '@archipelago/protocol';
import { and, eq, ne, sql } from 'drizzle-orm';
import type { Db, Tx } from '../db/database.js';
import { experts, type JobRow, jobs, runs } from '../db/schema/index.js';
import { newId } from '../ids.js';
import { recordScorePlan, type ScorePlan } from '../services/ensemble-scores.js';
import { EVENTS } from './events.js';
import { canTransitionRun, transitionRun } from './run-lifecycle.js';

/** What hands a committed job row to whichever process runs jobs (the job queue). */
export interface JobDispatcher {
  dispatch(id: string): void;
}

export interface JobRowOptions {
  runId?: string;
  datasetId?: string;
  maxAttempts?: number;
}

/** Insert a queued job row (inside the caller's transaction); dispatch it after the commit. */
export function insertJob(
  tx: Db | Tx,
  name: JobName,
  payload: Record<string, unknown>,
  opts: JobRowOptions = {},
): JobRow {
  return tx
    .insert(jobs)
    .values({
      id: newId('job'),
      name,
      status: 'queued',
      payload,
      runId: opts.runId ?? null,
      datasetId: opts.datasetId ?? null,
      maxAttempts: opts.maxAttempts ?? 3,
    })
    .returning()
    .get();
}

/** A run was created without a clustering: cluster its dataset (the job binds the run). */
export function clusterForNewRun(
  tx: Tx,
  run: {
    runId: string;
    datasetId: string;
    k: number;
    seed: number;
    assignment?: 'semantic' | 'random' | undefined;
    fineK?: number | undefined;
    valFraction?: number | undefined;
  },
): JobRow {
  return insertJob(
    tx,
    'cluster-dataset',
    {
      datasetId: run.datasetId,
      clusteringId: newId('clustering'),
      k: run.k,
      seed: run.seed,
      ...(run.assignment !== undefined ? { assignment: run.assignment } : {}),
      ...(run.fineK !== undefined ? { fineK: run.fineK } : {}),
      ...(run.valFraction !== undefined ? { valFraction: run.valFraction } : {}),
      runId: run.runId,
    },
    { runId: run.runId, datasetId: run.datasetId },
  );
}

/** An expert's final checkpoint was accepted (the expert is validating): validate it. */
export function validateFinalCheckpoint(
  tx: Tx,
  expert: { id: string; runId: string },
  checkpointId: string,
): JobRow {
  return insertJob(
    tx,
    'validate-checkpoint',
    { expertId: expert.id, checkpointId },
    { runId: expert.runId },
  );
}

/**
 * A checkpoint of the run was validated: once every expert is done, the run moves to routing and
 * its router is trained. Nothing happens for a run that is not training (cancelled meanwhile).
 */
export function routeWhenExpertsDone(tx: Tx, runId: string): JobRow | undefined {
  const remaining = tx
    .select({ n: sql<number>`count(*)` })
    .from(experts)
    .where(and(eq(experts.runId, runId), ne(experts.status, 'done')))
    .get()!.n;
  if (remaining > 0) return undefined;
  const run = tx.select().from(runs).where(eq(runs.id, runId)).get();
  if (!run || !canTransitionRun(run.status, EVENTS.runRouting)) return undefined;
  transitionRun(tx, runId, EVENTS.runRouting, { data: { reason: 'every expert is validated' } });
  return insertJob(tx, 'train-router', { runId }, { runId, maxAttempts: 3 });
}

/**
 * A router of the run was trained: publish an ensemble with it, for a run waiting on its router
 * (routing) and for a published one (a router trained on demand makes a new ensemble too).
 */
export function publishWithRouter(tx: Tx, runId: string, routerId: string): JobRow | undefined {
  const run = tx.select().from(runs).where(eq(runs.id, runId)).get();
  if (run?.status !== 'routing' && run?.status !== 'published') return undefined;
  return insertJob(tx, 'publish-ensemble', { runId, routerId }, { runId });
}

/**
 * A new ensemble was published: record its score's plan and, when it can be scored, queue the
 * job that scores it (two attempts: sampling and scoring are deterministic, a retry is for a
 * process that died). Its failure leaves the ensemble and the run as they are.
 */
export function scorePublished(
  tx: Tx,
  ensemble: { ensembleId: string; runId: string },
  plan: ScorePlan,
): JobRow | undefined {
  const job =
    plan.status === 'pending'
      ? insertJob(
          tx,
          'score-ensemble',
          { ensembleId: ensemble.ensembleId },
          { runId: ensemble.runId, maxAttempts: 2 },
        )
      : undefined;
  recordScorePlan(tx, ensemble.ensembleId, plan, job);
  return job;
}

/** A job that a run waited on failed for good: the run fails with the job's error. */
export function failRunForJob(db: Db, job: JobRow): void {
  if (!job.runId) return;
  const runId = job.runId;
  db.transaction((tx) => {
    const run = tx.select().from(runs).where(eq(runs.id, runId)).get();
    // A finished run stays as it is: in particular a published run keeps its ensemble when a
    // later job (a new router) fails; the job row and its job.failed event say what went wrong.
    if (!run || !canTransitionRun(run.status, EVENTS.runFailed)) return;
    const error = `${job.name} job ${job.id} failed: ${job.error ?? 'unknown error'}`;
    transitionRun(tx, run.id, EVENTS.runFailed, {
      set: { error, finishedAt: new Date() },
      data: { error, jobId: job.id },
    });
  });
}
