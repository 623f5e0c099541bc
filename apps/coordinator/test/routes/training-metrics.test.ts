import type { RunMetrics } from '@archipelago/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expertMetrics } from '../../src/db/schema/index.js';
import { expireLeases } from '../../src/services/leases.js';
import { MAX_CURVE_POINTS } from '../../src/services/run-metrics.js';
import { type RunFixture, runFixture } from './fixtures.js';

describe('training curves', () => {
  let f: RunFixture;
  let trained: string;
  beforeAll(async () => {
    f = await runFixture();
  });
  afterAll(async () => f.t.close());

  const metrics = async (runId = f.run.id) => {
    const res = await f.t.app.inject({ method: 'GET', url: `/api/v1/runs/${runId}/metrics` });
    return { status: res.statusCode, body: res.json() as RunMetrics };
  };

  it('records one point per heartbeat that moved the step, per expert, ordered by step', async () => {
    const { leaseId, expertId } = f.lease();
    trained = expertId;
    f.beat(leaseId, 10, 1.5);
    f.beat(leaseId, 10, 1.4); // same step: no new point
    f.beat(leaseId, 20, null); // no loss: no point
    f.beat(leaseId, 30, 0.8);
    const { status, body } = await metrics();
    expect(status).toBe(200);
    expect(body.runId).toBe(f.run.id);
    expect(body.experts.map((e) => e.cluster)).toEqual([0, 1]);
    const curve = body.experts.find((e) => e.expertId === expertId)!;
    expect(curve.points.map((p) => [p.step, p.loss])).toEqual([
      [10, 1.5],
      [30, 0.8],
    ]);
    expect(curve.points[0]!.imagesPerSec).toBe(50);
    expect(body.experts.find((e) => e.expertId !== expertId)!.points).toEqual([]);
  });

  it('drops the steps a restarted expert re-trains', async () => {
    // The lease expires; the expert starts over from its last checkpoint (none: step 0).
    expect(expireLeases(f.t.coordinator.db, new Date(Date.now() + 3_600_000))).toHaveLength(1);
    const leased = [f.lease(), f.lease()];
    const again = leased.find((l) => l.expertId === trained)!;
    f.beat(again.leaseId, 5, 1.9);
    f.beat(again.leaseId, 15, 1.2);
    const curve = (await metrics()).body.experts.find((e) => e.expertId === trained)!;
    expect(curve.points.map((p) => [p.step, p.loss])).toEqual([
      [5, 1.9],
      [15, 1.2],
    ]);
  });

  it(`thins long curves evenly to ${MAX_CURVE_POINTS} points, keeping the first and the last`, async () => {
    const run = await f.newRun();
    const expert = run.experts[1]!;
    const n = 5001;
    const rows = Array.from({ length: n }, (_, i) => ({
      expertId: expert.id,
      runId: run.id,
      step: i + 1,
      loss: 1 / (i + 1),
      imagesPerSec: 10,
      at: new Date(1_700_000_000_000 + i * 1000),
    }));
    for (let i = 0; i < n; i += 500)
      f.t.coordinator.db
        .insert(expertMetrics)
        .values(rows.slice(i, i + 500))
        .run();
    const curve = (await metrics(run.id)).body.experts[1]!;
    expect(curve.points).toHaveLength(MAX_CURVE_POINTS);
    expect(curve.points[0]!.step).toBe(1);
    expect(curve.points.at(-1)!.step).toBe(n);
    const steps = curve.points.map((p) => p.step);
    const gaps = steps.slice(1).map((s, i) => s - steps[i]!);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(2);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(3);
  });

  it('404s an unknown run', async () => {
    expect((await metrics('run_doesnotexist')).status).toBe(404);
  });
});
