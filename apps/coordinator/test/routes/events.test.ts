import type { RunEvent } from '@archipelago/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunFixture, runFixture } from './fixtures.js';

describe('event log routes', () => {
  let f: RunFixture;
  beforeAll(async () => {
    f = await runFixture();
    const { leaseId } = f.lease();
    f.beat(leaseId, 5, 0.9);
  });
  afterAll(async () => f.t.close());

  const get = async (url: string) => {
    const res = await f.t.app.inject({ method: 'GET', url });
    return { status: res.statusCode, body: res.json() as { events: RunEvent[] } };
  };

  it("lists a run's events newest first, and pages back with before", async () => {
    const all = await get(`/api/v1/runs/${f.run.id}/events`);
    expect(all.status).toBe(200);
    const types = all.body.events.map((e) => e.type);
    expect(types).toEqual(['expert.training', 'lease.granted', 'run.training', 'run.created']);
    const ids = all.body.events.map((e) => e.id);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    const granted = all.body.events[1]!;
    expect(granted).toMatchObject({
      runId: f.run.id,
      workerId: f.workerId,
      data: { objective: expect.any(String), fromStep: 0 },
    });
    expect(Date.parse(granted.at)).toBeGreaterThan(Date.now() - 60_000);

    const first = await get(`/api/v1/runs/${f.run.id}/events?limit=2`);
    expect(first.body.events.map((e) => e.id)).toEqual(ids.slice(0, 2));
    const next = await get(`/api/v1/runs/${f.run.id}/events?limit=2&before=${ids[1]}`);
    expect(next.body.events.map((e) => e.id)).toEqual(ids.slice(2, 4));
    const end = await get(`/api/v1/runs/${f.run.id}/events?before=${ids[3]}`);
    expect(end.body.events).toEqual([]);
  });

  it('keeps runs apart; the global log has every event', async () => {
    const other = await f.newRun();
    const mine = await get(`/api/v1/runs/${f.run.id}/events`);
    expect(mine.body.events.every((e) => e.runId === f.run.id)).toBe(true);
    const theirs = await get(`/api/v1/runs/${other.id}/events`);
    expect(theirs.body.events.map((e) => e.type)).toEqual(['run.training', 'run.created']);
    const global = await get('/api/v1/events?limit=1000');
    const types = global.body.events.map((e) => e.type);
    expect(types).toContain('token.created');
    expect(types).toContain('dataset.imported');
    expect(global.body.events.filter((e) => e.runId === other.id)).toHaveLength(2);
    expect((await get('/api/v1/events?limit=3')).body.events).toHaveLength(3);
  });

  it('404s an unknown run and refuses bad paging', async () => {
    expect((await get('/api/v1/runs/run_doesnotexist/events')).status).toBe(404);
    expect((await get(`/api/v1/runs/${f.run.id}/events?limit=0`)).status).toBe(400);
    expect((await get(`/api/v1/runs/${f.run.id}/events?before=x`)).status).toBe(400);
    expect((await get(`/api/v1/runs/${f.run.id}/events?since=1`)).status).toBe(400);
  });
});
