/**
 * A worker that loses its coordinator at a checkpoint waits there (found by the chaos run,
 * apps/worker/test/chaos/): it used to train on offline past checkpoints it could not upload,
 * each replacing the last, and when the outage outlasted the lease every one of those steps was
 * lost with it (three checkpoint intervals in one run). Now training stops at the first
 * checkpoint it cannot upload and goes on once the coordinator is back: a real coordinator
 * process, SIGKILLed after the first accepted checkpoint and started again on the same port, and
 * a real worker process; the order of the worker's log lines is what is checked, never timing.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoordinatorProcess, freePort, type Proc, startWorker, until } from './harness.js';

describe('a worker offline at a checkpoint', () => {
  let dir: string;
  let coord: CoordinatorProcess;
  let worker: Proc | undefined;
  // A lease that outlives the restart: the worker re-attaches and uploads what it waited with.
  const env = { ARCHIPELAGO_LEASE_TTL_MS: '60000', ARCHIPELAGO_HEARTBEAT_MS: '300' };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-offline-'));
    coord = new CoordinatorProcess(await freePort(), path.join(dir, 'data'));
    await coord.start(env);
  });

  afterAll(async () => {
    worker?.kill('SIGKILL');
    await coord?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('waits at the checkpoint it cannot upload and trains on once the coordinator is back', async () => {
    const { token } = await coord.token('offline');
    const datasetId = await coord.importMnist(1);
    const run = await coord.createRun({
      datasetId,
      experts: 1,
      objectives: 'fm:1',
      stepsPerExpert: 40,
      checkpointInterval: 10,
      batchSize: 8,
      model: 'tiny',
    });
    worker = startWorker('w', {
      coordinator: coord.url,
      token,
      objective: 'fm',
      workDir: path.join(dir, 'work'),
    });
    await until(
      'an accepted checkpoint',
      async () => ((await coord.run(run.id)).experts[0]!.checkpointStep ?? 0) >= 10,
      120_000,
    );
    await coord.kill();
    const waiting = await until(
      'the worker to wait at a checkpoint',
      async () =>
        /offline: training waits at step (\d+) until its checkpoint can be uploaded/.exec(
          worker!.output,
        ),
      120_000,
    );
    const step = Number(waiting[1]);
    const before = worker.output.length;
    await coord.start(env);
    const { code } = await worker.exit(120_000);
    expect(code, worker.output).toBe(0);
    const after = worker.output.slice(before);
    // Nothing was trained past the waiting checkpoint while offline, and none was replaced.
    const offline = worker.output.slice(0, before);
    const offlineSteps = [...offline.matchAll(/step (\d+)\/40 .*\[offline\]/g)].map((m) =>
      Number(m[1]),
    );
    expect(Math.max(0, ...offlineSteps), worker.output).toBeLessThanOrEqual(step);
    expect(worker.output).not.toMatch(/was not uploaded \(offline\)/);
    expect(after, worker.output).toMatch(/re-attached/);
    // The checkpoint it waited with was accepted after the restart, and the expert finished.
    const db = new Database(path.join(coord.dataDir, 'coordinator.sqlite'), { readonly: true });
    try {
      const steps = (
        db
          .prepare(
            "select step from checkpoints where status in ('accepted', 'superseded') order by step",
          )
          .all() as { step: number }[]
      ).map((r) => r.step);
      expect(steps).toContain(step);
      expect(steps.at(-1)).toBe(40);
    } finally {
      db.close();
    }
  });
});
