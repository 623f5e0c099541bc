import type { Dataset, Run } from '@archipelago/protocol';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { events } from '../src/db/schema/index.js';
import { auth, importFolderDataset, makeApp, type TestApp, waitForJob } from './helpers.js';

describe('runs', () => {
  let t: TestApp;
  let dataset: Dataset;
  beforeAll(async () => {
    t = await makeApp();
    dataset = await importFolderDataset(t, {
      name: 'patterns',
      classes: 4,
      perClass: 8,
      resolution: 16,
      k: 4,
    });
  });
  afterAll(async () => t.close());

  const create = (payload: Record<string, unknown>) =>
    t.app.inject({
      method: 'POST',
      url: '/api/v1/runs',
      headers: auth,
      payload: { datasetId: dataset.id, stepsPerExpert: 1000, ...payload },
    });

  it('creates a run over an existing clustering: experts bound to shards, mixed objectives, training', async () => {
    const res = await create({
      experts: 4,
      objectives: 'ddpm:1,fm:3',
      model: 'tiny',
      checkpointInterval: 100,
    });
    expect(res.statusCode, res.body).toBe(201);
    const run = res.json() as Run;
    expect(run.status).toBe('training');
    expect(run.clusteringId).toBe(dataset.clusterings[0]!.id);
    expect(run.config).toMatchObject({
      resolution: 16,
      channels: 3,
      model: 'tiny',
      schedule: 'cosine',
      // The default FM training times, since docs/results.md §1 measured them.
      fmTimeSampling: 'logit-normal',
      checkpointInterval: 100,
      numClasses: 4,
    });
    expect(run.experts.map((e) => [e.cluster, e.objective, e.schedule, e.status])).toEqual([
      [0, 'ddpm', 'cosine', 'pending'],
      [1, 'fm', null, 'pending'],
      [2, 'fm', null, 'pending'],
      [3, 'fm', null, 'pending'],
    ]);
    const sizes = dataset.clusterings[0]!.shards.filter((s) => s.split === 'train').map(
      (s) => s.count,
    );
    expect(run.experts.map((e) => e.size)).toEqual(sizes);
    expect(run.experts.every((e) => e.step === 0 && e.targetSteps === 1000)).toBe(true);

    const shown = (await t.app.inject({ method: 'GET', url: `/api/v1/runs/${run.id}` })).json();
    expect(shown).toEqual(run);
    const list = (await t.app.inject({ method: 'GET', url: '/api/v1/runs' })).json();
    expect(list.runs.map((r: Run) => r.id)).toContain(run.id);
    const log = t.coordinator.db.select().from(events).where(eq(events.runId, run.id)).all();
    expect(log.map((e) => e.type)).toEqual(['run.created', 'run.training']);
  });

  it('clusters first when no clustering with that K exists, then starts training', async () => {
    const res = await create({ experts: 2, objectives: 'any', seed: 7 });
    expect(res.statusCode, res.body).toBe(201);
    const run = res.json() as Run;
    expect(run.status).toBe('clustering');
    expect(run.clusteringId).toBeNull();
    expect(run.experts.every((e) => e.size === null)).toBe(true);
    const jobRow = t.coordinator.db.query.jobs
      .findFirst({ where: (j, { eq: e }) => e(j.runId, run.id) })
      .sync();
    const job = await waitForJob(t.app, jobRow!.id);
    expect(job.status, job.error ?? '').toBe('succeeded');
    const after = (
      await t.app.inject({ method: 'GET', url: `/api/v1/runs/${run.id}` })
    ).json() as Run;
    expect(after.status).toBe('training');
    expect(after.clusteringId).toBe(job.result!.clusteringId);
    expect(after.experts.reduce((a, e) => a + (e.size ?? 0) + (e.valSize ?? 0), 0)).toBe(32);
  });

  it('random shards: a run asking for them gets its own clustering of the semantic sizes', async () => {
    const semantic = dataset.clusterings[0]!;
    const res = await create({ experts: 4, assignment: 'random' });
    expect(res.statusCode, res.body).toBe(201);
    const run = res.json() as Run;
    // The semantic clustering with that K and seed is not reused for random shards.
    expect(run.status).toBe('clustering');
    // Its shards are not made yet: no assignment to show.
    expect(run.assignment).toBeNull();
    const jobRow = t.coordinator.db.query.jobs
      .findFirst({ where: (j, { eq: e }) => e(j.runId, run.id) })
      .sync();
    expect(jobRow!.payload).toMatchObject({ k: 4, assignment: 'random' });
    const job = await waitForJob(t.app, jobRow!.id);
    expect(job.status, job.error ?? '').toBe('succeeded');
    const ds = (
      await t.app.inject({ method: 'GET', url: `/api/v1/datasets/${dataset.id}` })
    ).json() as Dataset;
    const random = ds.clusterings.find((c) => c.id === job.result!.clusteringId)!;
    expect(random.assignment).toBe('random');
    expect(random.sizes).toEqual(semantic.sizes);
    // A second random run reuses it; a random run cannot be put on the semantic clustering.
    const again = (await create({ experts: 4, assignment: 'random' })).json() as Run;
    expect(again.status).toBe('training');
    expect(again.clusteringId).toBe(random.id);
    // The API says which shards a run trains on (the dashboard shows it).
    expect(again.assignment).toBe('random');
    const onSemantic = (await create({ experts: 4, clusteringId: semantic.id })).json() as Run;
    expect(onSemantic.assignment).toBe('semantic');
    const mismatch = await create({
      experts: 4,
      assignment: 'random',
      clusteringId: semantic.id,
    });
    expect(mismatch.statusCode).toBe(400);
    expect(mismatch.json().error.code).toBe('clustering_mismatch');
    for (const assignment of ['kmeans', '', 7, null, ['random']]) {
      const bad = await create({ experts: 4, assignment });
      expect(bad.statusCode, bad.body).toBe(400);
      expect(bad.json().error.code).toBe('validation_error');
      expect(bad.json().error.message).toContain('assignment');
    }
  });

  it('rejects objective mixes that do not fit, naming the problem', async () => {
    const sum = await create({ experts: 4, objectives: 'ddpm:2,fm:6' });
    expect(sum.statusCode).toBe(400);
    expect(sum.json().error).toEqual({
      code: 'invalid_objective_mix',
      message: 'objective mix "ddpm:2,fm:6" names 8 experts but the run has 4',
    });
    const unknown = await create({ experts: 2, objectives: 'edm:2' });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().error.message).toMatch(/valid: ddpm, fm, any/);
  });

  it('rejects an unknown model preset, a resolution mismatch, too many experts and a missing dataset', async () => {
    const preset = await create({ experts: 4, model: 'gigantic' });
    expect(preset.statusCode).toBe(400);
    expect(preset.json().error.message).toMatch(/micro, tiny, small, base, large/);
    const times = await create({ experts: 4, fmTimeSampling: 'beta' });
    expect(times.statusCode).toBe(400);
    expect(times.json().error.message).toMatch(/fmTimeSampling/);
    const res = await create({ experts: 4, resolution: 64 });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('resolution_mismatch');
    const many = await create({ experts: 200 });
    expect(many.statusCode).toBe(400);
    expect(many.json().error.code).toBe('too_many_experts');
    const missing = await t.app.inject({
      method: 'POST',
      url: '/api/v1/runs',
      headers: auth,
      payload: { datasetId: 'ds_000000000000', experts: 2, stepsPerExpert: 10 },
    });
    expect(missing.statusCode).toBe(404);
    const interval = await create({ experts: 4, checkpointInterval: 5000 });
    expect(interval.statusCode).toBe(400);
    expect(interval.json().error.code).toBe('invalid_checkpoint_interval');
  });
});
