/**
 * `coordinator jobs` as a processor with only Redis and the object store (issue 13 point 7): real
 * processes on loopback, an S3 server (s3rver) and Redis under a key prefix of this test. The
 * coordinator (`serve`, `--no-local-jobs` by environment) prepares jobs and applies results; the
 * job processes each have an empty data directory of their own and never open a database.
 *
 * - a job process killed (SIGKILL) in the middle of an import: once its lock in Redis expires the
 *   coordinator re-queues the job as a new, counted attempt, and a second job process finishes it;
 * - results for a stale attempt, and a duplicate of the applied one, are ignored;
 * - a folder and an embeddings file on the coordinator are staged in the store for the processor;
 * - a result posted while the coordinator is down waits in Redis and is applied when it is back.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { encodeNpy } from '@archipelago/data';
import { createObjectStore } from '@archipelago/storage';
import Database from 'better-sqlite3';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOB_RESULTS_QUEUE } from '../../src/redis.js';
import { makeImageFolder } from '../helpers.js';

const BIN = path.resolve(import.meta.dirname, '../../dist/bin.js');
const ADMIN_KEY = 'test-admin-key-0123456789abcdef';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await Promise.resolve()
      .then(fn)
      .catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

class Proc {
  output = '';
  readonly exited: Promise<unknown>;
  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    const collect = (chunk: Buffer) => {
      this.output += chunk.toString('utf8');
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.exited = new Promise((resolve) => child.on('exit', resolve));
  }
  get running() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
  /** `host:pid`, as a processor names itself on the job rows it computed. */
  get owner() {
    return `${hostname()}:${this.child.pid}`;
  }
}

interface JobRowView {
  id: string;
  name: string;
  status: string;
  attempts: number;
  claimed_by: string | null;
  result: string | null;
}

describe('coordinator jobs on its own empty data directory (Redis + S3 only)', () => {
  let dir: string;
  let s3: S3rver;
  let env: Record<string, string>;
  let url: string;
  let coordinator: Proc;
  let db: Database.Database;
  let s3Endpoint: string;
  const procs: Proc[] = [];
  const prefix = `test-remote-jobs-${process.pid}-${Date.now()}`;

  const spawnBin = (name: string, args: string[], extra: Record<string, string> = {}) => {
    const p = new Proc(
      name,
      spawn(process.execPath, [BIN, ...args], {
        env: { ...process.env, ...env, ...extra },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    procs.push(p);
    return p;
  };
  const jobProcess = async (name: string) => {
    const data = path.join(dir, name);
    await mkdir(data);
    const p = spawnBin(name, ['jobs', '--data-dir', data, '--no-sampling'], {
      ARCHIPELAGO_LOG_LEVEL: 'info',
    });
    await until(`${name} to be ready`, () => {
      if (!p.running) throw new Error(`${name} exited:\n${p.output}`);
      return /job processor ready/.test(p.output);
    }).catch((err) => {
      throw new Error(`${(err as Error).message}\n${p.output}`);
    });
    return { p, data };
  };
  const api = async <T>(method: string, route: string, body?: unknown) => {
    const res = await fetch(`${url}${route}`, {
      method,
      headers: {
        authorization: `Bearer ${ADMIN_KEY}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as T };
  };
  let port: number;
  const startCoordinator = async () => {
    coordinator = spawnBin('coordinator', [
      'serve',
      '--port',
      String(port),
      '--data-dir',
      path.join(dir, 'coordinator'),
    ]);
    await until('the coordinator to answer', async () => {
      if (!coordinator.running) throw new Error(`coordinator exited:\n${coordinator.output}`);
      return (await fetch(`${url}/readyz`)).ok;
    }).catch((err) => {
      throw new Error(`${(err as Error).message}\n${coordinator.output}`);
    });
  };
  const row = (id: string) =>
    db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRowView | undefined;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-remote-jobs-'));
    s3 = new S3rver({
      port: 0,
      address: '127.0.0.1',
      silent: true,
      directory: path.join(dir, 's3'),
      configureBuckets: [{ name: 'arch' }],
    });
    const { port: s3Port } = await s3.run();
    s3Endpoint = `http://127.0.0.1:${s3Port}`;
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    env = {
      ARCHIPELAGO_ADMIN_KEY: ADMIN_KEY,
      ARCHIPELAGO_LOG_LEVEL: 'warn',
      ARCHIPELAGO_HOST: '127.0.0.1',
      ARCHIPELAGO_REDIS_URL: REDIS_URL,
      ARCHIPELAGO_REDIS_PREFIX: prefix,
      ARCHIPELAGO_LOCAL_JOBS: 'false',
      // A processor that dies loses its lock 2 s after its last renewal; the coordinator then
      // re-queues its job.
      ARCHIPELAGO_JOB_STALE_MS: '2000',
      ARCHIPELAGO_S3_BUCKET: 'arch',
      ARCHIPELAGO_S3_ENDPOINT: s3Endpoint,
      ARCHIPELAGO_S3_REGION: 'us-east-1',
      ARCHIPELAGO_S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    };
    await startCoordinator();
    db = new Database(path.join(dir, 'coordinator', 'coordinator.sqlite'), { readonly: true });
  }, 60_000);

  afterAll(async () => {
    db?.close();
    for (const p of procs) if (p.running) p.child.kill('SIGTERM');
    await Promise.race([Promise.all(procs.map((p) => p.exited)), sleep(15_000)]);
    for (const p of procs) if (p.running) p.child.kill('SIGKILL');
    await s3?.close();
    const redis = new Redis(REDIS_URL);
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
    await rm(dir, { recursive: true, force: true });
  }, 30_000);

  it('a job whose processor is killed mid-job is re-queued as a counted attempt and finished by another; stale and duplicate results are ignored', async () => {
    const first = await jobProcess('jobs-1');
    const imp = await api<{ job: { id: string } }>('POST', '/api/v1/datasets', {
      name: 'mnist-8',
      source: { kind: 'builtin', name: 'mnist' },
      resolution: 8,
      cluster: { k: 2 },
    });
    expect(imp.status).toBe(202);
    const jobId = imp.body.job.id;
    // The first processor reports that it started computing: the row names it.
    await until('the first processor to take the import', () => {
      const r = row(jobId);
      return r?.status === 'running' && r.claimed_by === first.p.owner;
    });
    expect(row(jobId)!.attempts).toBe(1);
    first.p.child.kill('SIGKILL');
    await first.p.exited;

    const second = await jobProcess('jobs-2');
    const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    const results = new Queue(JOB_RESULTS_QUEUE, { connection, prefix });
    const forged = (attempt: number) => ({
      id: jobId,
      attempt,
      name: 'import-dataset',
      processor: 'forged:1',
      ok: true,
      output: { dataset: { id: 'dataset_forged' } },
    });
    const consumed = (bullId: string) =>
      until(`result ${bullId} to be consumed`, async () => {
        return (await results.getJobState(bullId)) === 'unknown';
      });
    const ignored = () => (coordinator.output.match(/ignored a stale job result/g) ?? []).length;
    let done: JobRowView;
    let result: { datasetId: string; clusteringId: string };
    try {
      // Attempt 2 runs on the second processor; a result for the dead processor's attempt 1
      // arrives meanwhile: it is ignored, and attempt 2 goes on.
      await until('the second processor to take attempt 2', () => {
        const r = row(jobId);
        return r?.status === 'running' && r.attempts === 2 && r.claimed_by === second.p.owner;
      });
      await results.add('import-dataset', forged(1), {
        jobId: `${jobId}-1`,
        removeOnComplete: true,
      });
      await consumed(`${jobId}-1`);
      await until('the coordinator to log it as ignored', () => ignored() >= 1);
      done = await until(
        'the import to finish on the second processor',
        () => {
          const r = row(jobId);
          if (r?.status === 'failed') throw new Error(`import failed: ${r.result}`);
          return r?.status === 'succeeded' ? r : null;
        },
        90_000,
      ).catch((err) => {
        throw new Error(
          `${(err as Error).message}\n${JSON.stringify(row(jobId))}\n${coordinator.output}\n${second.p.output}`,
        );
      });
      // Re-queued as attempt 2 (attempt 1 counted when the dead processor's copy was claimed).
      expect(done.attempts).toBe(2);
      expect(done.claimed_by).toBe(second.p.owner);
      expect(coordinator.output).toMatch(/re-queued a job whose process stopped/);
      result = JSON.parse(done.result!) as { datasetId: string; clusteringId: string };
      const ds = await api<{ count: number; clusterings: { id: string; shards: unknown[] }[] }>(
        'GET',
        `/api/v1/datasets/${result.datasetId}`,
      );
      expect(ds.status).toBe(200);
      expect(ds.body.count).toBeGreaterThan(0);
      expect(ds.body.clusterings.map((c) => c.id)).toEqual([result.clusteringId]);
      expect(ds.body.clusterings[0]!.shards).toHaveLength(4);
      // A duplicate of the applied attempt's result: ignored too, never applied twice.
      await results.add('import-dataset', forged(2), {
        jobId: `${jobId}-2`,
        removeOnComplete: true,
      });
      await consumed(`${jobId}-2`);
      await until('the coordinator to log it as ignored', () => ignored() >= 2);
    } finally {
      await results.close();
      connection.disconnect();
    }
    const after = row(jobId)!;
    expect(after).toMatchObject({ status: 'succeeded', attempts: 2, claimed_by: second.p.owner });
    expect(JSON.parse(after.result!)).toEqual(result);
    const datasets = db.prepare('SELECT id FROM datasets').all() as { id: string }[];
    expect(datasets.map((d) => d.id)).toEqual([result.datasetId]);

    // The job processes never created a database (nor anything else) in their data directories.
    for (const { data } of [first, second]) {
      expect(existsSync(path.join(data, 'coordinator.sqlite'))).toBe(false);
      expect(await readdir(data)).toEqual([]);
    }
  }, 150_000);
  it('a folder and an embeddings file on the coordinator are staged in the store and imported by a job process', async () => {
    // No job process at first: the coordinator prepares the import (stages the files) and the
    // job waits in Redis.
    for (const p of procs.filter((q) => q !== coordinator && q.running)) {
      p.child.kill('SIGTERM');
      await p.exited;
    }
    const upload = path.join(dir, 'upload');
    const folder = await makeImageFolder(upload, 2, 6);
    const rows = 12;
    const data = new Float32Array(rows * 4);
    // Embeddings that split the images by index parity, against the pixel classes.
    for (let i = 0; i < rows; i++) data.set(i % 2 ? [1, 0, 0, 0] : [0, 0, 0, 1], i * 4);
    const embeddings = path.join(upload, 'emb.npy');
    await writeFile(embeddings, encodeNpy(data, [rows, 4]));
    const imp = await api<{ job: { id: string } }>('POST', '/api/v1/datasets', {
      name: 'uploaded',
      source: { kind: 'folder', path: folder },
      embeddingsPath: embeddings,
      resolution: 8,
      cluster: { k: 2 },
    });
    expect(imp.status).toBe(202);
    const jobId = imp.body.job.id;
    const store = createObjectStore({
      kind: 's3',
      bucket: 'arch',
      endpoint: s3Endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    const staged = async () => {
      const keys: string[] = [];
      for await (const o of store.list('staging/')) keys.push(o.key);
      return keys;
    };
    try {
      // 12 images and the embeddings file.
      expect(
        await until('the files to be staged', async () => (await staged()).length === 13),
      ).toBe(true);
      // The originals are gone: whoever computes the import can only read the staged copy.
      await rm(upload, { recursive: true });
      const third = await jobProcess('jobs-3');
      const done = await until('the folder import', () => {
        const r = row(jobId);
        if (r?.status === 'failed') throw new Error(`import failed: ${JSON.stringify(r)}`);
        return r?.status === 'succeeded' ? r : null;
      }).catch((err) => {
        throw new Error(
          `${(err as Error).message}\n${JSON.stringify(row(jobId))}\n${coordinator.output}\n${third.p.output}`,
        );
      });
      expect(done).toMatchObject({ attempts: 1, claimed_by: third.p.owner });
      const { datasetId } = JSON.parse(done.result!) as { datasetId: string };
      const ds = await api<{
        count: number;
        classNames: string[];
        featureKind: string;
        source: { kind: string; path: string };
        clusterings: { sizes: number[] }[];
      }>('GET', `/api/v1/datasets/${datasetId}`);
      expect(ds.body).toMatchObject({
        count: 12,
        classNames: ['class-0', 'class-1'],
        featureKind: 'embeddings',
        // The dataset records where the images came from, not the staged copy.
        source: { kind: 'folder', path: folder },
      });
      expect(ds.body.clusterings[0]!.sizes.sort()).toEqual([6, 6]);
      // The staged copy is deleted once the import is recorded (just after its commit).
      await until('the staged copy to be deleted', async () => (await staged()).length === 0);
      expect(await readdir(third.data)).toEqual([]);
    } finally {
      await store.close();
    }
  }, 120_000);
  it('a result posted while the coordinator is down waits in Redis and is applied once it is back, without a new attempt', async () => {
    const processor =
      procs.find((p) => p !== coordinator && p.running) ?? (await jobProcess('jobs-4')).p;
    const imp = await api<{ job: { id: string } }>('POST', '/api/v1/datasets', {
      name: 'mnist-8-again',
      source: { kind: 'builtin', name: 'mnist' },
      resolution: 8,
      cluster: { k: 2 },
    });
    expect(imp.status).toBe(202);
    const jobId = imp.body.job.id;
    await until('the processor to take the import', () => {
      const r = row(jobId);
      return r?.status === 'running' && r.claimed_by === processor.owner;
    });
    coordinator.child.kill('SIGKILL');
    await coordinator.exited;
    // The processor finishes and posts its result with no coordinator to take it.
    await until(
      'the processor to finish the import',
      () => new RegExp(`"job":"${jobId}"[^\n]*"msg":"job succeeded"`).test(processor.output),
      90_000,
    );
    expect(row(jobId)).toMatchObject({ status: 'running', attempts: 1 });
    await startCoordinator();
    const done = await until('the result to be applied', () => {
      const r = row(jobId);
      return r?.status === 'succeeded' ? r : null;
    }).catch((err) => {
      throw new Error(
        `${(err as Error).message}\n${JSON.stringify(row(jobId))}\n${coordinator.output}`,
      );
    });
    // Applied as attempt 1: the waiting result was a sign of life, so nothing was re-queued.
    expect(done).toMatchObject({ attempts: 1, claimed_by: processor.owner });
    expect(coordinator.output).not.toMatch(/re-queued a job whose process stopped/);
    const { datasetId } = JSON.parse(done.result!) as { datasetId: string };
    expect(
      (await api<{ count: number }>('GET', `/api/v1/datasets/${datasetId}`)).body.count,
    ).toBeGreaterThan(0);
  }, 150_000);
});
