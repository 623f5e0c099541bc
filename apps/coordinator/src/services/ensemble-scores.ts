/**
 * Scoring published ensembles (issue 14 point 1): after publishing, the `score-ensemble` job
 * samples the ensemble with its inference defaults and scores the samples with
 * `@archipelago/metrics` against the held-out split of its built-in dataset (FD-cls, precision,
 * recall, intra-class diversity, fragment index, and the same of real training images as the
 * reference); `score.json` and `score.png` are stored beside the manifest
 * (`ensembles/{id}/score.json`, `score.png`) and an `ensemble_scores` row says where the score
 * stands. Scoring never touches the ensemble: one that cannot be scored stays published and its
 * row records why.
 */
import { shippedEntry } from '@archipelago/metrics';
import {
  type EnsembleManifest,
  type EnsembleScore,
  type EnsembleScoreReply,
  FD_CLS_NAME,
  type JobProgress,
} from '@archipelago/protocol';
import type { ObjectStore } from '@archipelago/storage';
import { eq } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { ComputePool } from '../compute/compute-pool.js';
import type { Db, Tx } from '../db/database.js';
import { type EnsembleScoreRow, ensembleScores, type JobRow, jobs } from '../db/schema/index.js';
import { LoadedEnsemble } from '../ensembles/loaded-ensemble.js';
import { metricDataset, scoreEnsemble } from '../ensembles/score-ensemble.js';
import { DomainError, PermanentJobError } from '../errors.js';
import { getEnsembleRow, readManifest } from './ensembles.js';

/** The noise seed every ensemble is scored with (stored with its score). */
export const SCORE_SEED = 0;

export const scoreJsonKey = (id: string) => `ensembles/${id}/score.json`;
export const scorePngKey = (id: string) => `ensembles/${id}/score.png`;

/** What the publisher decided about scoring a new ensemble, before its commit. */
export type ScorePlan =
  | { status: 'pending'; samples: number; seed: number }
  | { status: 'failed' | 'disabled'; samples: number; seed: number; error?: string };

/**
 * Whether a new ensemble can be scored: disabled with `samples` 0; failed at once (no job) when
 * no shipped classifier fits its dataset and resolution; else pending (a job is queued).
 */
export async function planScore(
  manifest: Pick<EnsembleManifest, 'dataset'>,
  samples: number,
): Promise<ScorePlan> {
  const base = { samples, seed: SCORE_SEED };
  if (samples === 0) return { ...base, status: 'disabled' };
  try {
    const { dataset, resolution } = metricDataset(manifest);
    await shippedEntry(dataset, resolution);
  } catch (err) {
    return { ...base, status: 'failed', error: (err as Error).message };
  }
  return { ...base, status: 'pending' };
}

/** Record the plan of a new ensemble in `tx` (the publish's transaction), with its job if any. */
export function recordScorePlan(tx: Tx, ensembleId: string, plan: ScorePlan, job?: JobRow): void {
  tx.insert(ensembleScores)
    .values({
      ensembleId,
      status: plan.status,
      jobId: job?.id ?? null,
      samples: plan.samples,
      seed: plan.seed,
      error: 'error' in plan ? (plan.error ?? null) : null,
      finishedAt: plan.status === 'pending' ? null : new Date(),
    })
    .onConflictDoNothing()
    .run();
}

/** What the `score-ensemble` job computes on: the stored manifest and the settings. */
export interface ScoreInput {
  ensembleId: string;
  samples: number;
  seed: number;
}

/** What the compute returns (the files are in the store by then). */
export interface ScoreOutcome {
  jsonKey: string;
  pngKey: string;
  summary: Record<string, number | null>;
}

/** The database half: the job's input, or nothing to do for an ensemble scored already. */
export function prepareScore(
  db: Db,
  payload: { ensembleId: string },
): { input: ScoreInput } | { skipped: Record<string, unknown> } {
  const row = db
    .select()
    .from(ensembleScores)
    .where(eq(ensembleScores.ensembleId, payload.ensembleId))
    .get();
  if (!row) throw new PermanentJobError(`ensemble ${payload.ensembleId} has no score to compute`);
  if (row.status !== 'pending')
    return { skipped: { ensembleId: row.ensembleId, status: row.status, skipped: true } };
  return { input: { ensembleId: row.ensembleId, samples: row.samples, seed: row.seed } };
}

const finite = (v: number) => (Number.isFinite(v) ? v : null);

/**
 * Sample and score a stored ensemble (reads only the store): `score.json`'s text, the figure and
 * the headline numbers. What a compute thread runs.
 */
export async function scoreStoredEnsemble(
  store: ObjectStore,
  input: ScoreInput,
  progress: (stage: string, done: number, total: number) => void = () => {},
): Promise<{ json: string; png: Uint8Array; summary: Record<string, number | null> }> {
  const { manifest } = await readManifest(store, input.ensembleId);
  let ensemble: LoadedEnsemble;
  try {
    metricDataset(manifest);
    ensemble = await LoadedEnsemble.load(manifest, (file) => store.getBytes(file.key));
  } catch (err) {
    if (err instanceof DomainError) throw new PermanentJobError(err.message, err.code);
    throw err;
  }
  try {
    const { score, figure } = await scoreEnsemble(ensemble, manifest, {
      samples: input.samples,
      seed: input.seed,
      progress,
    });
    const s = score.scores;
    return {
      json: `${JSON.stringify(score, null, 2)}\n`,
      png: new Uint8Array(figure),
      summary: {
        fdCls: finite(s.fdCls),
        precision: finite(s.precision),
        recall: finite(s.recall),
        intraClassDiversity: finite(s.intraClassDiversity),
        meanComponents: finite(s.fragments.generated.meanComponents),
        referenceFdCls: finite(score.reference.fdCls),
      },
    };
  } finally {
    ensemble.dispose();
  }
}

/**
 * The store half: score (on a compute thread when there is a pool) and store both files beside
 * the manifest; the same input gives the same bytes, so a retry overwrites them harmlessly.
 */
export async function computeScore(
  deps: { store: ObjectStore; log: Logger; compute?: ComputePool | undefined },
  input: ScoreInput,
  progress: (stage: string, done: number, total: number) => void,
): Promise<ScoreOutcome> {
  const out = deps.compute
    ? await deps.compute.run('score', input, { onProgress: progress })
    : await scoreStoredEnsemble(deps.store, input, progress);
  const jsonKey = scoreJsonKey(input.ensembleId);
  const pngKey = scorePngKey(input.ensembleId);
  await deps.store.put(pngKey, out.png, { contentType: 'image/png' });
  await deps.store.put(jsonKey, Buffer.from(out.json), { contentType: 'application/json' });
  return { jsonKey, pngKey, summary: out.summary };
}

/** The coordinator records a computed score (only while it is pending). */
export function applyScore(tx: Tx, ensembleId: string, outcome: ScoreOutcome): void {
  tx.update(ensembleScores)
    .set({
      status: 'scored',
      jsonKey: outcome.jsonKey,
      pngKey: outcome.pngKey,
      summary: outcome.summary,
      error: null,
      finishedAt: new Date(),
    })
    .where(eq(ensembleScores.ensembleId, ensembleId))
    .run();
}

/** A `score-ensemble` job failed for good: its score records why; the ensemble stays published. */
export function failScoreForJob(db: Db, job: JobRow): void {
  if (job.name !== 'score-ensemble') return;
  const ensembleId = String(job.payload.ensembleId);
  db.update(ensembleScores)
    .set({
      status: 'failed',
      error: job.error ?? 'the scoring job failed',
      finishedAt: new Date(),
    })
    .where(eq(ensembleScores.ensembleId, ensembleId))
    .run();
}

export function getScoreRow(db: Db, ensembleId: string): EnsembleScoreRow | undefined {
  return db.select().from(ensembleScores).where(eq(ensembleScores.ensembleId, ensembleId)).get();
}

/**
 * The score row of a scored ensemble.
 * @throws {DomainError} `not_found` (no such ensemble), `not_scored` (published before scoring
 * existed), `score_disabled`, `score_pending` (details: the job and its progress), `score_failed`
 * (details: the error)
 */
export function scoredRow(db: Db, ensembleId: string): EnsembleScoreRow {
  getEnsembleRow(db, ensembleId);
  const row = getScoreRow(db, ensembleId);
  if (!row)
    throw new DomainError(
      'not_scored',
      `ensemble ${ensembleId} was published without a score (before scoring existed)`,
    );
  if (row.status === 'disabled')
    throw new DomainError(
      'score_disabled',
      `ensemble ${ensembleId} was published with scoring disabled (scoreSamples 0)`,
    );
  if (row.status === 'failed')
    throw new DomainError('score_failed', `scoring ensemble ${ensembleId} failed: ${row.error}`, {
      error: row.error,
    });
  if (row.status === 'pending') {
    const job = row.jobId ? db.select().from(jobs).where(eq(jobs.id, row.jobId)).get() : undefined;
    const progress: JobProgress | null = job?.progress ?? null;
    throw new DomainError(
      'score_pending',
      `ensemble ${ensembleId} is being scored (${row.samples} samples)${progress ? `: ${progress.stage} ${progress.done}/${progress.total}` : ''}`,
      { jobId: row.jobId, jobStatus: job?.status ?? null, progress },
    );
  }
  return row;
}

/** `GET /api/v1/ensembles/:id/score`: the stored `score.json` and where its figure is. */
export async function readScore(
  db: Db,
  store: ObjectStore,
  ensembleId: string,
): Promise<EnsembleScoreReply> {
  const row = scoredRow(db, ensembleId);
  const score = JSON.parse(
    (await store.getBytes(row.jsonKey ?? scoreJsonKey(ensembleId))).toString('utf8'),
  ) as EnsembleScore;
  return {
    ...score,
    metricName: FD_CLS_NAME,
    figureUrl: `/api/v1/ensembles/${ensembleId}/score.png`,
    scoredAt: (row.finishedAt ?? row.createdAt).toISOString(),
  };
}

/** The stored figure of a scored ensemble. */
export async function readScoreFigure(
  db: Db,
  store: ObjectStore,
  ensembleId: string,
): Promise<Buffer> {
  const row = scoredRow(db, ensembleId);
  return store.getBytes(row.pngKey ?? scorePngKey(ensembleId));
}
