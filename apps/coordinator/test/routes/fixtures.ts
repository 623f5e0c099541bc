/**
 * A coordinator with a two-expert run over a small image folder and one registered worker, plus
 * the lease calls a worker would make (through the same services its socket handler uses).
 */
import type { Run } from '@archipelago/protocol';
import { expect } from 'vitest';
import type { ConfigInput } from '../../src/config.js';
import { workers } from '../../src/db/schema/index.js';
import { newId } from '../../src/ids.js';
import { heartbeat, tryLease } from '../../src/services/leases.js';
import { createToken } from '../../src/services/tokens.js';
import { auth, makeApp, makeImageFolder, type TestApp, waitForJob } from '../helpers.js';

export interface RunFixture {
  t: TestApp;
  run: Run;
  workerId: string;
  /** Lease the next pending expert to the worker. */
  lease(): { leaseId: string; expertId: string };
  /** A heartbeat of the worker's lease at `step`. */
  beat(leaseId: string, step: number, loss: number | null, paused?: boolean): void;
  newRun(): Promise<Run>;
}

export async function runFixture(overrides: ConfigInput = {}): Promise<RunFixture> {
  const t = await makeApp(overrides);
  const dir = await makeImageFolder(t.dataDir, 2, 10);
  const res = await t.app.inject({
    method: 'POST',
    url: '/api/v1/datasets',
    headers: auth,
    payload: {
      name: 'patterns',
      source: { kind: 'folder', path: dir },
      resolution: 16,
      cluster: { k: 2 },
    },
  });
  expect(res.statusCode, res.body).toBe(202);
  const job = await waitForJob(t.app, res.json().job.id);
  expect(job.status, job.error ?? '').toBe('succeeded');
  const datasetId = job.result!.datasetId as string;
  const newRun = async () => {
    const created = await t.app.inject({
      method: 'POST',
      url: '/api/v1/runs',
      headers: auth,
      payload: {
        datasetId,
        experts: 2,
        objectives: 'ddpm:1,fm:1',
        stepsPerExpert: 100,
        checkpointInterval: 10,
        model: 'tiny',
      },
    });
    expect(created.statusCode, created.body).toBe(201);
    return created.json() as Run;
  };
  const run = await newRun();
  const { db, config } = t.coordinator;
  const token = createToken(db, 'tests');
  const addWorker = () => {
    const id = newId('worker');
    db.insert(workers)
      .values({
        id,
        tokenId: token.id,
        name: 'test-worker',
        objective: 'any',
        backend: 'cpu',
        hardware: { cpus: 2, memoryBytes: 4e9, threads: 2 },
        online: true,
        connectedAt: new Date(),
        lastSeenAt: new Date(),
      })
      .run();
    return id;
  };
  const workerId = addWorker();
  // A worker holds one lease at a time: further leases go to further volunteers.
  const holders = new Map<string, string>();
  return {
    t,
    run,
    workerId,
    newRun,
    lease() {
      const busy = new Set(holders.values());
      const holder = busy.has(workerId) ? addWorker() : workerId;
      const leased = tryLease(db, holder, 'any', config.leaseTtlMs);
      if (!leased) throw new Error('no expert to lease');
      holders.set(leased.lease.id, holder);
      return { leaseId: leased.lease.id, expertId: leased.expert.id };
    },
    beat(leaseId, step, loss, paused) {
      const holder = holders.get(leaseId) ?? workerId;
      heartbeat(
        db,
        config.leaseTtlMs,
        holder,
        { leaseId, step, loss, imagesPerSec: 50, ...(paused === undefined ? {} : { paused }) },
        config.pausedLeaseGraceMs,
      );
    },
  };
}
