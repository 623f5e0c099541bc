/**
 * Exact resume with real processes (issue 13, point 5): a worker trains an expert, is killed with
 * SIGKILL after an accepted checkpoint, and a fresh worker (empty work dir) resumes it from the
 * coordinator's resume point and its optimiser state; its final weights equal those of the same
 * expert trained without interruption (same dataset shard, seed, thread count) within 1e-6.
 *
 * The two runs share the dataset's clustering and the run seed, so their experts get the same
 * shard and training seed; batches and noise are functions of (seed, step).
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadCheckpoint } from '@archipelago/models';
import type { Run } from '@archipelago/protocol';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoordinatorProcess, freePort, type Proc, startWorker, until } from './harness.js';

const STEPS = 60;
const INTERVAL = 10;

describe('exact resume across a kill -9', () => {
  let dir: string;
  let coord: CoordinatorProcess;
  let token: string;
  let datasetId: string;
  const procs: Proc[] = [];

  const worker = (label: string) => {
    const p = startWorker(label, {
      coordinator: coord.url,
      token,
      objective: 'fm',
      workDir: path.join(dir, `work-${label}`),
      // The same thread count in every process: data-parallel sums in another order otherwise.
      extra: ['--threads', '1'],
    });
    procs.push(p);
    return p;
  };
  const newRun = () =>
    coord.createRun({
      datasetId,
      experts: 1,
      objectives: 'fm:1',
      stepsPerExpert: STEPS,
      checkpointInterval: INTERVAL,
      batchSize: 8,
      model: 'tiny',
    });
  const query = <T>(sql: string, ...params: unknown[]): T[] => {
    const db = new Database(path.join(coord.dataDir, 'coordinator.sqlite'), {
      readonly: true,
      fileMustExist: true,
    });
    try {
      return db.prepare(sql).all(...params) as T[];
    } finally {
      db.close();
    }
  };
  const objectPath = (key: string) => path.join(coord.dataDir, 'objects', 'objects', key);
  /** The accepted final checkpoint's weights of the run's only expert. */
  const finalWeights = async (run: Run) => {
    const expertId = run.experts[0]!.id;
    const row = await until('the final checkpoint', async () => {
      const rows = query<{ key: string; step: number }>(
        "select key, step from checkpoints where expert_id = ? and final = 1 and status = 'accepted'",
        expertId,
      );
      return rows[0];
    });
    expect(row.step).toBe(STEPS);
    return loadCheckpoint(new Uint8Array(readFileSync(objectPath(row.key)))).params;
  };
  const exitOk = async (p: Proc) => {
    const { code } = await p.exit();
    expect(code, `${p.name} output:\n${p.output}`).toBe(0);
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-exact-'));
    coord = new CoordinatorProcess(await freePort(), path.join(dir, 'data'));
    await coord.start();
    token = (await coord.token('volunteers')).token;
    datasetId = await coord.importMnist(1);
  });

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await coord?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a worker killed after a checkpoint and resumed elsewhere ends with the weights of an uninterrupted run', async () => {
    // The uninterrupted run.
    const straight = await newRun();
    await exitOk(worker('straight'));
    const want = await finalWeights(straight);

    // The same expert again; its worker is killed after its first accepted checkpoint.
    const run = await newRun();
    const victim = worker('victim');
    await until('an accepted checkpoint', async () => {
      const e = (await coord.run(run.id)).experts[0]!;
      return (e.checkpointStep ?? 0) >= INTERVAL && e;
    });
    victim.kill('SIGKILL');
    await victim.exited;
    const resumeStep = (await coord.run(run.id)).experts[0]!.checkpointStep!;
    expect(resumeStep, victim.output).toBeLessThan(STEPS);
    // Its optimiser state was accepted with it.
    const [resumeRow] = query<{ optimizer_key: string | null; optimizer_sha256: string | null }>(
      "select optimizer_key, optimizer_sha256 from checkpoints where expert_id = ? and step = ? and status = 'accepted'",
      run.experts[0]!.id,
      resumeStep,
    );
    expect(resumeRow?.optimizer_key).toContain(resumeRow!.optimizer_sha256!);
    await until('the lease to expire', async () => {
      const e = (await coord.run(run.id)).experts[0]!;
      return e.status === 'pending' && e;
    });

    const heir = worker('heir');
    await exitOk(heir);
    expect(heir.output).toMatch(
      new RegExp(
        `resuming expert 0 \\(fm\\) from step ${resumeStep}: the accepted checkpoint of step ${resumeStep} \\(sha256 [0-9a-f]{12}\\) and its optimizer state`,
      ),
    );
    const got = await finalWeights(run);

    expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
    let max = 0;
    for (const [name, p] of Object.entries(want)) {
      const q = got[name]!.data;
      for (let i = 0; i < p.data.length; i++) max = Math.max(max, Math.abs(p.data[i]! - q[i]!));
    }
    expect(max, `${heir.output}\n${victim.output}`).toBeLessThanOrEqual(1e-6);
  });
});
