import { eq } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { jobs } from '../../src/db/schema/index.js';
import { EVENTS } from '../../src/lifecycle/events.js';
import { transitionExpert } from '../../src/lifecycle/expert-lifecycle.js';
import {
  failRunForJob,
  publishWithRouter,
  routeWhenExpertsDone,
  validateFinalCheckpoint,
} from '../../src/lifecycle/pipeline.js';
import { transitionRun } from '../../src/lifecycle/run-lifecycle.js';
import { type LifecycleFixture, lifecycleFixture } from './fixtures.js';

describe('pipeline', () => {
  let f: LifecycleFixture;
  afterEach(() => f.close());

  const finish = (expertId: string) =>
    f.db.transaction((tx) => {
      for (const t of [EVENTS.leaseGranted, EVENTS.expertValidating, EVENTS.expertDone] as const)
        transitionExpert(tx, expertId, t);
    });
  const training = () => f.db.transaction((tx) => transitionRun(tx, f.run.id, EVENTS.runTraining));

  it('a run created without a clustering queues its cluster job, dispatched after the commit', () => {
    f = lifecycleFixture();
    const [job] = f.jobRows();
    expect(job).toMatchObject({
      name: 'cluster-dataset',
      status: 'queued',
      runId: f.run.id,
      datasetId: f.run.datasetId,
      payload: { datasetId: f.run.datasetId, k: 2, seed: 0, runId: f.run.id },
    });
    expect(job!.payload.clusteringId).toEqual(expect.any(String));
    expect(f.dispatched).toEqual([job!.id]);
  });

  it('an accepted final checkpoint is followed by its validation', () => {
    f = lifecycleFixture();
    const expert = f.expertRow(f.run.experts[0]!.id);
    const job = f.db.transaction((tx) => validateFinalCheckpoint(tx, expert, 'checkpoint_1'));
    expect(job).toMatchObject({
      name: 'validate-checkpoint',
      runId: f.run.id,
      payload: { expertId: expert.id, checkpointId: 'checkpoint_1' },
    });
  });

  it('the last validated expert moves the run to routing and queues its router, once', () => {
    f = lifecycleFixture();
    training();
    const [a, b] = f.run.experts;
    finish(a!.id);
    expect(f.db.transaction((tx) => routeWhenExpertsDone(tx, f.run.id))).toBeUndefined();
    expect(f.runRow().status).toBe('training');
    finish(b!.id);
    const job = f.db.transaction((tx) => routeWhenExpertsDone(tx, f.run.id));
    expect(job).toMatchObject({
      name: 'train-router',
      runId: f.run.id,
      maxAttempts: 3,
      payload: { runId: f.run.id },
    });
    expect(f.runRow().status).toBe('routing');
    expect(f.eventTypes().at(-1)).toBe('run.routing');
    expect(f.db.transaction((tx) => routeWhenExpertsDone(tx, f.run.id))).toBeUndefined();
    expect(f.jobRows().filter((j) => j.name === 'train-router')).toHaveLength(1);
  });

  it('a cancelled run gets no router when its experts are done', () => {
    f = lifecycleFixture(1);
    training();
    finish(f.run.experts[0]!.id);
    f.db.transaction((tx) => transitionRun(tx, f.run.id, EVENTS.runCancelled));
    expect(f.db.transaction((tx) => routeWhenExpertsDone(tx, f.run.id))).toBeUndefined();
    expect(f.runRow().status).toBe('cancelled');
  });

  it('a trained router is published for a routing or published run only', () => {
    f = lifecycleFixture();
    const publish = () => f.db.transaction((tx) => publishWithRouter(tx, f.run.id, 'router_1'));
    expect(publish()).toBeUndefined();
    training();
    expect(publish()).toBeUndefined();
    f.db.transaction((tx) => transitionRun(tx, f.run.id, EVENTS.runRouting));
    expect(publish()).toMatchObject({
      name: 'publish-ensemble',
      payload: { runId: f.run.id, routerId: 'router_1' },
    });
    f.db.transaction((tx) => transitionRun(tx, f.run.id, EVENTS.ensemblePublished));
    expect(publish()?.name).toBe('publish-ensemble');
  });

  it('a job that failed for good fails its unfinished run; a published run keeps its ensemble', () => {
    f = lifecycleFixture();
    const failed = () => {
      const job = f.db.select().from(jobs).where(eq(jobs.runId, f.run.id)).get()!;
      return { ...job, status: 'failed' as const, error: 'out of memory' };
    };
    training();
    f.db.transaction((tx) => transitionRun(tx, f.run.id, EVENTS.runRouting));
    f.db.transaction((tx) => transitionRun(tx, f.run.id, EVENTS.ensemblePublished));
    const events = f.eventCount();
    failRunForJob(f.db, failed());
    expect(f.runRow().status).toBe('published');
    expect(f.eventCount()).toBe(events);

    f.close();
    f = lifecycleFixture();
    const job = failed();
    failRunForJob(f.db, job);
    expect(f.runRow()).toMatchObject({
      status: 'failed',
      error: `cluster-dataset job ${job.id} failed: out of memory`,
    });
    expect(f.eventTypes().at(-1)).toBe('run.failed');
    const after = f.eventCount();
    failRunForJob(f.db, job);
    expect(f.eventCount()).toBe(after);
    failRunForJob(f.db, { ...job, runId: null });
    expect(f.eventCount()).toBe(after);
  });
});
