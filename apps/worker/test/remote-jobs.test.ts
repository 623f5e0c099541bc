/**
 * A whole run whose every job is computed by a `coordinator jobs` process that has only Redis and
 * the object store (an S3 server, s3rver) and its own empty data directory (issue 13 point 7):
 * the coordinator (`--no-local-jobs` by environment) prepares each job, applies its result and
 * signs the manifest; real worker processes train the experts. Import (no clustering), the run's
 * clustering, two validations, the router, the publication and the ensemble's score: each job row
 * names the job process as the one that computed it, and the job process never creates a
 * database.
 *
 * Lives with the worker's tests because it runs worker processes (this package's build); the
 * coordinator's own test of a processor killed mid-job is apps/coordinator/test/jobs/.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import type { Ensemble, EnsembleManifestV2 } from '@archipelago/protocol';
import Database from 'better-sqlite3';
import type S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  COORDINATOR_BIN,
  CoordinatorProcess,
  freePort,
  Proc,
  startS3,
  startWorker,
  until,
} from './harness.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('a run whose jobs are all computed on a job process with only Redis and S3', () => {
  let dir: string;
  let s3: S3rver;
  let coord: CoordinatorProcess;
  let jobs: Proc;
  let jobsDir: string;
  const procs: Proc[] = [];
  const prefix = `test-remote-run-${process.pid}-${Date.now()}`;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-remote-run-'));
    const store = await startS3(path.join(dir, 's3'));
    s3 = store.s3;
    const env = {
      ARCHIPELAGO_REDIS_URL: REDIS_URL,
      ARCHIPELAGO_REDIS_PREFIX: prefix,
      ARCHIPELAGO_LOCAL_JOBS: 'false',
      ARCHIPELAGO_ROUTER_STEPS: '20',
      // The published ensemble is scored by the job process too, on a few samples.
      ARCHIPELAGO_SCORE_SAMPLES: '10',
      ...store.env(),
    };
    coord = new CoordinatorProcess(await freePort(), path.join(dir, 'coordinator'));
    await coord.start(env);
    jobsDir = path.join(dir, 'jobs');
    await mkdir(jobsDir);
    jobs = new Proc(
      'jobs',
      spawn(process.execPath, [COORDINATOR_BIN, 'jobs', '--data-dir', jobsDir, '--no-sampling'], {
        env: { ...process.env, ...env, ARCHIPELAGO_LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    procs.push(jobs);
    await until('the job process', async () => /job processor ready/.test(jobs.output), 60_000);
  }, 120_000);

  afterAll(async () => {
    for (const p of procs) if (p.running) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => p.exit(15_000).catch(() => p.kill('SIGKILL'))));
    await coord?.stop();
    await s3?.close();
    await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('imports, clusters, validates, trains the router and publishes a manifest that verifies', async () => {
    const logs = () => `\n${coord.proc?.output}\n${procs.map((p) => p.output).join('\n')}`;
    const imp = await coord.api<{ job: { id: string } }>('POST', '/api/v1/datasets', {
      name: 'mnist-8',
      source: { kind: 'builtin', name: 'mnist' },
      resolution: 8,
    });
    expect(imp.status).toBe(202);
    const imported = await coord.importDone(imp.body.job.id).catch((err) => {
      throw new Error(`${(err as Error).message}${logs()}`);
    });
    // No clustering yet: the run queues a cluster-dataset job of its own.
    const run = await coord.createRun({
      datasetId: imported.result!.datasetId,
      experts: 2,
      objectives: 'ddpm:1,fm:1',
      model: 'tiny',
      stepsPerExpert: 20,
      checkpointInterval: 10,
      batchSize: 16,
    });
    // Its experts can be leased once the job process has clustered the dataset.
    await until(
      'the run to be clustered',
      async () => {
        const r = await coord.run(run.id);
        if (r.status === 'failed') throw new Error(`run failed: ${r.error}`);
        return r.status === 'training' ? r : null;
      },
      120_000,
      200,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}${logs()}`);
    });
    const token = await coord.token('remote jobs test');
    for (const objective of ['ddpm', 'fm'] as const)
      procs.push(
        startWorker(objective, {
          coordinator: coord.url,
          token: token.token,
          objective,
          workDir: path.join(dir, `w-${objective}`),
        }),
      );
    await until(
      'the run to be published',
      async () => {
        const r = await coord.run(run.id);
        if (r.status === 'failed') throw new Error(`run failed: ${r.error}`);
        return r.status === 'published' ? r : null;
      },
      240_000,
      250,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}${logs()}`);
    });

    const { body: ensembles } = await coord.api<{ ensembles: Ensemble[] }>(
      'GET',
      `/api/v1/runs/${run.id}/ensembles`,
    );
    expect(ensembles.ensembles).toHaveLength(1);
    const ens = ensembles.ensembles[0]!;
    const { body: verify } = await coord.api<{ ok: boolean }>(
      'GET',
      `/api/v1/ensembles/${ens.id}/verify`,
    );
    expect(verify.ok).toBe(true);
    const { body: manifest } = await coord.api<EnsembleManifestV2>(
      'GET',
      `/api/v1/ensembles/${ens.id}/manifest.json`,
    );
    expect(manifest.experts).toHaveLength(2);
    // The inference defaults the job process measured, signed by the coordinator.
    expect(manifest.inference.rationale).toMatch(/held-out velocity MSE/);
    // Its score, computed by the job process (score.json and score.png in S3), recorded here.
    const score = await until(
      'the ensemble to be scored',
      async () => {
        const r = await coord.api<{ metric: string; error?: { code: string } }>(
          'GET',
          `/api/v1/ensembles/${ens.id}/score`,
        );
        if (r.status === 200) return r.body;
        if (r.body.error?.code !== 'score_pending')
          throw new Error(`no score: ${JSON.stringify(r.body)}`);
        return null;
      },
      120_000,
      250,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}${logs()}`);
    });
    expect(score).toMatchObject({
      metric: 'FD-cls',
      dataset: { name: 'mnist', resolution: 8 },
      settings: { samples: 10 },
    });

    // Every job was computed by the job process: its `host:pid` is on each row.
    const db = new Database(path.join(dir, 'coordinator', 'coordinator.sqlite'), {
      readonly: true,
    });
    try {
      const rows = db
        .prepare('SELECT name, status, attempts, claimed_by FROM jobs ORDER BY created_at')
        .all() as { name: string; status: string; attempts: number; claimed_by: string }[];
      expect(rows.map((r) => r.name).sort()).toEqual(
        [
          'cluster-dataset',
          'import-dataset',
          'publish-ensemble',
          'score-ensemble',
          'train-router',
          'validate-checkpoint',
          'validate-checkpoint',
        ].sort(),
      );
      const owner = `${hostname()}:${jobs.child.pid}`;
      for (const r of rows)
        expect(r, JSON.stringify(rows)).toMatchObject({
          status: 'succeeded',
          claimed_by: owner,
        });
    } finally {
      db.close();
    }
    expect(jobs.output).toMatch(/job succeeded/);
    expect(coord.proc!.output).not.toMatch(/job started/);
    // Nothing in the job process's data directory: no database, no local store, no keys.
    expect(existsSync(path.join(jobsDir, 'coordinator.sqlite'))).toBe(false);
    expect(await readdir(jobsDir)).toEqual([]);
  }, 300_000);
});
