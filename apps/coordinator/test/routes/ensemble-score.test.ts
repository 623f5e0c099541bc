/**
 * `GET /api/v1/ensembles/:id/score` and `score.png` on a real coordinator (SQLite, local store,
 * in-process jobs on its compute thread): an untrained 16x16 ten-digit ensemble published as the
 * publish job records it, scored by a real `score-ensemble` job with 10 samples against the
 * built-in MNIST; each state's stable code (pending, disabled, failed, not scored, no ensemble);
 * a job that fails for good leaves the ensemble published; the view key guards both routes.
 */
import type { EnsembleManifest, EnsembleScoreReply } from '@archipelago/protocol';
import { FD_CLS_NAME } from '@archipelago/protocol';
import { eq } from 'drizzle-orm';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobs, runs } from '../../src/db/schema/index.js';
import { scorePublished } from '../../src/lifecycle/pipeline.js';
import {
  planScore,
  recordScorePlan,
  SCORE_SEED,
  scoreJsonKey,
  scorePngKey,
} from '../../src/services/ensemble-scores.js';
import { publishTestEnsemble } from '../ensembles/test-ensemble.js';
import { makeApp, type TestApp } from '../helpers.js';

const VIEW_KEY = 'view-key-for-score-tests';
const viewer = { authorization: `Bearer ${VIEW_KEY}` };
const DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
const MNIST_16 = { imageSize: 16, datasetName: 'MNIST digits', classNames: DIGITS };

describe('ensemble scores', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await makeApp({ viewKey: VIEW_KEY, scoreSamples: 10 });
  }, 60_000);
  afterAll(async () => t.close());

  const get = (url: string, headers: Record<string, string> = viewer) =>
    t.app.inject({ method: 'GET', url, headers });
  /** Record the score's plan as the publish job does and run its job, if any, to the end. */
  const publishScored = async (manifest: EnsembleManifest) => {
    const runId = manifest.run.id;
    const plan = await planScore(manifest, t.coordinator.config.scoreSamples);
    const job = t.coordinator.db.transaction((tx) =>
      scorePublished(tx, { ensembleId: manifest.id, runId }, plan),
    );
    if (!job) return undefined;
    t.coordinator.jobs.dispatch(job.id);
    return t.coordinator.jobs.waitFor(job.id);
  };
  const errorOf = async (url: string) => {
    const res = await get(url);
    return { status: res.statusCode, ...(res.json().error as { code: string; details?: unknown }) };
  };

  it('a score job samples, scores and stores score.json and score.png beside the manifest', async () => {
    const manifest = await publishTestEnsemble(t.coordinator, MNIST_16);
    const job = await publishScored(manifest);
    expect(job?.status, job?.error ?? '').toBe('succeeded');
    expect(job?.result).toMatchObject({ ensembleId: manifest.id, fdCls: expect.any(Number) });

    const res = await get(`/api/v1/ensembles/${manifest.id}/score`);
    expect(res.statusCode, res.body).toBe(200);
    const score = res.json() as EnsembleScoreReply;
    expect(score).toMatchObject({
      metric: 'FD-cls',
      metricName: FD_CLS_NAME,
      ensembleId: manifest.id,
      dataset: { name: 'mnist', resolution: 16, heldOut: 2000 },
      settings: {
        samples: 10,
        seed: SCORE_SEED,
        classes: 'balanced',
        steps: manifest.inference.steps,
        sampler: manifest.inference.sampler,
        routing: manifest.inference.routing,
      },
      figureUrl: `/api/v1/ensembles/${manifest.id}/score.png`,
    });
    expect(score.scores.counts).toEqual({ real: 2000, generated: 10 });
    // Untrained experts draw noise: far from the real-train reference, which is near zero.
    expect(score.scores.fdCls).toBeGreaterThan(5 * (score.reference.fdCls ?? 0));
    for (const v of [score.scores.precision, score.scores.recall, score.reference.recall])
      expect(v).toBeGreaterThanOrEqual(0);
    expect(score.reference.fragments.meanComponents).toBeGreaterThan(0);
    expect(score.classifier.file).toBe('mnist-16.bin');

    // The files are in the store, next to the manifest; the route serves the stored JSON.
    const stored = JSON.parse(
      (await t.coordinator.store.getBytes(scoreJsonKey(manifest.id))).toString('utf8'),
    );
    expect(stored.scores).toEqual(score.scores);
    const png = await get(`/api/v1/ensembles/${manifest.id}/score.png`);
    expect(png.statusCode).toBe(200);
    expect(png.headers['content-type']).toBe('image/png');
    expect(png.rawPayload).toEqual(await t.coordinator.store.getBytes(scorePngKey(manifest.id)));
    const meta = await sharp(png.rawPayload).metadata();
    expect(meta.format).toBe('png');
    expect(meta.width).toBeGreaterThan(500);
  }, 120_000);

  it('answers with a stable code while pending, disabled, not scored, or for no ensemble', async () => {
    const pending = await publishTestEnsemble(t.coordinator);
    t.coordinator.db.transaction((tx) =>
      recordScorePlan(tx, pending.id, { status: 'pending', samples: 10, seed: 0 }),
    );
    for (const suffix of ['score', 'score.png'])
      expect(await errorOf(`/api/v1/ensembles/${pending.id}/${suffix}`)).toMatchObject({
        status: 409,
        code: 'score_pending',
        details: { jobId: null, progress: null },
      });

    const disabled = await publishTestEnsemble(t.coordinator);
    expect(await planScore(disabled, 0)).toEqual({ status: 'disabled', samples: 0, seed: 0 });
    t.coordinator.db.transaction((tx) =>
      scorePublished(
        tx,
        { ensembleId: disabled.id, runId: disabled.run.id },
        {
          status: 'disabled',
          samples: 0,
          seed: 0,
        },
      ),
    );
    expect(await errorOf(`/api/v1/ensembles/${disabled.id}/score`)).toMatchObject({
      status: 404,
      code: 'score_disabled',
    });

    const legacy = await publishTestEnsemble(t.coordinator);
    expect(await errorOf(`/api/v1/ensembles/${legacy.id}/score`)).toMatchObject({
      status: 404,
      code: 'not_scored',
    });
    expect(await errorOf(`/api/v1/ensembles/ens_${'0'.repeat(32)}/score`)).toMatchObject({
      status: 404,
      code: 'not_found',
    });
  });

  it('an ensemble with no metric for its dataset is recorded failed at once, with no job', async () => {
    // The 8x8 test ensemble's dataset "d" is no built-in dataset.
    const manifest = await publishTestEnsemble(t.coordinator);
    expect(await publishScored(manifest)).toBeUndefined();
    const err = await errorOf(`/api/v1/ensembles/${manifest.id}/score`);
    expect(err).toMatchObject({ status: 409, code: 'score_failed' });
    expect((err.details as { error: string }).error).toMatch(/no metric for dataset "d"/);
  });

  it('a score job that fails for good records the failure; the ensemble and its run stay as they were', async () => {
    const manifest = await publishTestEnsemble(t.coordinator, MNIST_16);
    const { db, store } = t.coordinator;
    db.update(runs).set({ status: 'published' }).where(eq(runs.id, manifest.run.id)).run();
    // Its checkpoints are gone: the ensemble cannot be loaded, on either attempt.
    for (const e of manifest.experts) await store.delete(e.checkpoint.key);
    const job = await publishScored(manifest);
    expect(job?.status).toBe('failed');
    expect(job?.attempts).toBe(2);
    const err = await errorOf(`/api/v1/ensembles/${manifest.id}/score`);
    expect(err).toMatchObject({ status: 409, code: 'score_failed' });
    expect((err.details as { error: string }).error).toBe(job?.error);
    expect((await get(`/api/v1/ensembles/${manifest.id}`)).statusCode).toBe(200);
    expect(db.select().from(runs).where(eq(runs.id, manifest.run.id)).get()?.status).toBe(
      'published',
    );
    expect(db.select().from(jobs).where(eq(jobs.id, job!.id)).get()?.name).toBe('score-ensemble');
  }, 60_000);

  it('needs the view key, as the other ensemble reads do', async () => {
    const manifest = await publishTestEnsemble(t.coordinator);
    for (const suffix of ['score', 'score.png']) {
      const res = await get(`/api/v1/ensembles/${manifest.id}/${suffix}`, {});
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe('view_key_required');
    }
  });
});
