/**
 * The whole loop with real processes: coordinator, worker daemons training two experts (DDPM and
 * FM) on 8x8 digits, checkpoint validation, router training, a signed manifest, sampling over
 * REST and with the offline `sample` command. Once on embedded defaults (SQLite, local store,
 * in-process jobs), with the coordinator killed during router training; once with Redis/BullMQ
 * job and sampler processes and an S3 store (s3rver).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type {
  Ensemble,
  EnsembleManifest,
  EnsembleManifestV2,
  Run,
  SampleResponse,
} from '@archipelago/protocol';
import type S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_KEY,
  COORDINATOR_BIN,
  CoordinatorProcess,
  freePort,
  Proc,
  startS3,
  startWorker,
  until,
} from './harness.js';

const SAMPLE_BIN = path.resolve(import.meta.dirname, '../../coordinator/dist/sample-bin.js');
const STEPS = 60;

const isPng = (b: Uint8Array) =>
  Buffer.from(b.subarray(0, 8)).equals(Buffer.from('89504e470d0a1a0a', 'hex'));

/** Settings every coordinator-side process of a scenario shares. */
const BASE_ENV = {
  ARCHIPELAGO_ROUTER_STEPS: '300',
};

async function runSample(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [SAMPLE_BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => {
    output += d;
  });
  child.stderr.on('data', (d) => {
    output += d;
  });
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  return { code, output };
}

async function trainRun(
  coord: CoordinatorProcess,
  dir: string,
  objectives = 'ddpm:1,fm:1',
): Promise<{ run: Run; workers: Proc[] }> {
  const datasetId = await coord.importMnist(2);
  const run = await coord.createRun({
    datasetId,
    experts: 2,
    objectives,
    model: 'tiny',
    stepsPerExpert: STEPS,
    checkpointInterval: 30,
    batchSize: 32,
    learningRate: 2e-3,
  });
  const token = await coord.token('ensemble test');
  const workers = (['ddpm', 'fm'] as const).map((objective) =>
    startWorker(objective, {
      coordinator: coord.url,
      token: token.token,
      objective,
      workDir: path.join(dir, `w-${objective}`),
    }),
  );
  return { run, workers };
}

async function waitPublished(coord: CoordinatorProcess, runId: string, extra = ''): Promise<Run> {
  return until(
    'the run to be published',
    async () => {
      const r = await coord.run(runId);
      if (r.status === 'failed')
        throw new Error(`run failed: ${r.error}\n${coord.proc?.output}${extra}`);
      return r.status === 'published' ? r : null;
    },
    240_000,
    250,
  ).catch((err) => {
    throw new Error(`${(err as Error).message}\n${coord.proc?.output}${extra}`);
  });
}

async function post(url: string, body: unknown, accept = 'application/json') {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept },
    body: JSON.stringify(body),
  });
  return {
    status: res.status,
    type: res.headers.get('content-type') ?? '',
    bytes: Buffer.from(await res.arrayBuffer()),
  };
}

async function sampleJson(url: string, body: unknown): Promise<SampleResponse> {
  const res = await post(url, body);
  expect(res.status, res.bytes.toString()).toBe(200);
  return JSON.parse(res.bytes.toString()) as SampleResponse;
}

/** What both scenarios check once a run is published. */
async function checkPublished(coord: CoordinatorProcess, run: Run, dir: string): Promise<void> {
  const { body: list } = await coord.api<{ ensembles: Ensemble[] }>(
    'GET',
    `/api/v1/runs/${run.id}/ensembles`,
  );
  expect(list.ensembles).toHaveLength(1);
  const ens = list.ensembles[0]!;
  expect(ens.routerAccuracy.accuracy).toHaveLength(10);
  // Near t = 0 the router sees clean images: it tells the two clusters apart far above chance.
  expect(ens.routerAccuracy.accuracy[0]!).toBeGreaterThan(ens.routerAccuracy.chance);
  expect(ens.inference.rationale).toMatch(/held-out velocity MSE/);

  // The manifest: latest by run equals the immutable one, and it verifies with the served key.
  const latest = await fetch(`${coord.url}/api/v1/runs/${run.id}/manifest.json`);
  const text = await latest.text();
  const immutable = await (await fetch(`${coord.url}${ens.manifestUrl}`)).text();
  expect(text).toBe(immutable);
  const manifest = JSON.parse(text) as EnsembleManifest;
  expect(manifest.id).toBe(ens.id);
  expect(manifest.experts.map((e) => e.objective).sort()).toEqual(['ddpm', 'fm']);
  for (const e of manifest.experts) expect(e.validationLoss).toBeLessThan(0.8 * e.baselineLoss);
  const { body: keys } = await coord.api<{ keys: { publicKey: string }[] }>('GET', '/api/v1/keys');
  expect(keys.keys[0]!.publicKey).toBe(manifest.signature.publicKey);
  const { body: verify } = await coord.api<{ ok: boolean }>(
    'GET',
    `/api/v1/ensembles/${ens.id}/verify`,
  );
  expect(verify.ok).toBe(true);

  // Sampling over REST: top-1 runs one expert per sample per step, full runs all of them.
  const url = `${coord.url}/api/v1/ensembles/${ens.id}/samples`;
  const top1 = await sampleJson(url, {
    count: 6,
    steps: 4,
    seed: 5,
    routing: 'top-1',
    sampler: 'euler',
  });
  expect(top1.images).toHaveLength(6);
  expect(top1.routing.steps).toHaveLength(4);
  for (const s of top1.routing.steps) expect(s.rows.reduce((a, b) => a + b, 0)).toBe(6);
  expect(top1.routing.meanExpertsPerSample).toBe(1);
  for (const p of top1.perSample) expect(p.evaluations.reduce((a, b) => a + b, 0)).toBe(4);
  const full = await sampleJson(url, {
    count: 6,
    steps: 4,
    seed: 5,
    routing: 'full',
    sampler: 'euler',
  });
  for (const s of full.routing.steps) expect(s.rows).toEqual([6, 6]);
  expect(full.routing.meanExpertsPerSample).toBe(2);
  const again = await sampleJson(url, {
    count: 6,
    steps: 4,
    seed: 5,
    routing: 'top-1',
    sampler: 'euler',
  });
  expect(again.images).toEqual(top1.images);
  const other = await sampleJson(url, {
    count: 6,
    steps: 4,
    seed: 6,
    routing: 'top-1',
    sampler: 'euler',
  });
  expect(other.images).not.toEqual(top1.images);
  const png = await post(
    url,
    { count: 4, steps: 4, classes: [0, 1, 2, 3], guidance: 2 },
    'image/png',
  );
  expect(png.status).toBe(200);
  expect(png.type).toMatch(/image\/png/);
  expect(isPng(png.bytes)).toBe(true);
  // Limits: over the count limit -> 400, over the cost limit -> 413, each with a reason.
  const tooMany = await post(url, { count: 65 });
  expect(tooMany.status).toBe(400);
  const tooCostly = await post(url, { count: 64, steps: 200, routing: 'full', sampler: 'heun' });
  expect(tooCostly.status).toBe(413);
  expect(tooCostly.bytes.toString()).toMatch(/expert evaluations/);

  // Offline: the `sample` command verifies signature and hashes, then samples, no coordinator
  // needed for the files it already has.
  const out = path.join(dir, 'grid.png');
  const ok = await runSample([
    '--manifest',
    `${coord.url}/api/v1/runs/${run.id}/manifest.json`,
    '--out',
    out,
    '--count',
    '4',
    '--steps',
    '4',
    '--public-key',
    manifest.signature.publicKey,
  ]);
  expect(ok.output).toMatch(/signature and every checkpoint verified/);
  expect(ok.code).toBe(0);
  expect(isPng(await readFile(out))).toBe(true);

  // A tampered manifest or checkpoint fails verification, naming what is wrong.
  const local = path.join(dir, 'offline');
  await mkdir(path.join(local, 'checkpoints'), { recursive: true });
  for (const f of [...manifest.experts.map((e) => e.checkpoint), manifest.router.checkpoint]) {
    const res = await fetch(new URL(f.uri, `${coord.url}/api/v1/ensembles/${manifest.id}/`));
    await writeFile(path.join(local, f.uri), Buffer.from(await res.arrayBuffer()));
  }
  await writeFile(path.join(local, 'manifest.json'), text);
  const good = await runSample([
    '--manifest',
    path.join(local, 'manifest.json'),
    '--out',
    out,
    '--count',
    '2',
    '--steps',
    '2',
    '--public-key',
    manifest.signature.publicKey,
  ]);
  expect(good.code, good.output).toBe(0);
  const tampered = structuredClone(manifest);
  tampered.inference.steps = 50;
  await writeFile(path.join(local, 'manifest.json'), JSON.stringify(tampered));
  const key = ['--public-key', manifest.signature.publicKey];
  const bad = await runSample([
    '--manifest',
    path.join(local, 'manifest.json'),
    '--out',
    out,
    ...key,
  ]);
  expect(bad.code).toBe(3);
  expect(bad.output).toMatch(/does not match its content/);
  await writeFile(path.join(local, 'manifest.json'), text);
  const ck = path.join(local, manifest.experts[0]!.checkpoint.uri);
  const bytes = await readFile(ck);
  bytes[bytes.length - 1] ^= 0xff;
  await writeFile(ck, bytes);
  const badCk = await runSample([
    '--manifest',
    path.join(local, 'manifest.json'),
    '--out',
    out,
    ...key,
  ]);
  expect(badCk.code).toBe(3);
  expect(badCk.output).toMatch(/expert 0 checkpoint .* sha256/);

  // The manifest names content-addressed objects, and the download route serves no other bytes.
  for (const f of [...manifest.experts.map((e) => e.checkpoint), manifest.router.checkpoint])
    expect(f.key).toContain(f.sha256);
  const first = manifest.experts[0]!.checkpoint;
  const stored = path.join(coord.dataDir, 'objects', 'objects', first.key);
  if (existsSync(stored)) {
    // The embedded store (S3's objects are not on this disk): its bytes rot behind its back.
    const original = await readFile(stored);
    const rotten = Buffer.from(original);
    rotten[rotten.length - 1]! ^= 0xff;
    await writeFile(stored, rotten);
    const served = await fetch(new URL(first.uri, `${coord.url}/api/v1/ensembles/${manifest.id}/`))
      .then((r) => r.arrayBuffer())
      .catch(() => null);
    expect(served).toBeNull();
    await writeFile(stored, original);
  }
}

describe('ensemble end to end on embedded defaults', () => {
  let dir: string;
  let coord: CoordinatorProcess;
  const procs: Proc[] = [];
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-ens-'));
    coord = new CoordinatorProcess(await freePort(), path.join(dir, 'data'));
  });
  afterAll(async () => {
    for (const p of procs) if (p.running) p.kill('SIGKILL');
    await coord.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('trains, validates, survives a kill during router training, publishes, samples and verifies', async () => {
    // A long router job, so that the coordinator can be killed in the middle of it.
    await coord.start({ ...BASE_ENV, ARCHIPELAGO_ROUTER_STEPS: '5000' });
    const { run, workers } = await trainRun(coord, dir);
    procs.push(...workers);
    const routerJob = await until(
      'router training to start',
      async () => {
        const { body } = await coord.api<{ jobs: { id: string; name: string }[] }>(
          'GET',
          '/api/v1/jobs?status=running',
        );
        return body.jobs.find((j) => j.name === 'train-router') ?? null;
      },
      240_000,
      200,
    ).catch((err) => {
      throw new Error(
        `${(err as Error).message}\n${coord.proc?.output}\n${workers.map((w) => w.output).join('\n')}`,
      );
    });
    const validated = await coord.run(run.id);
    for (const e of validated.experts) {
      expect(e.status).toBe('done');
      expect(e.validationLoss!).toBeLessThan(e.validationBaseline!);
    }
    await coord.kill();
    // On restart the unfinished job is found in the database and runs again (shorter now).
    await coord.start(BASE_ENV);
    await waitPublished(coord, run.id);
    const { body: job } = await coord.api<{ status: string; attempts: number }>(
      'GET',
      `/api/v1/jobs/${routerJob.id}`,
    );
    expect(job.status).toBe('succeeded');
    expect(job.attempts).toBe(2);
    await checkPublished(coord, await coord.run(run.id), dir);
  }, 600_000);
});

describe('ensemble end to end with Redis (BullMQ job and sampler processes) and S3', () => {
  let dir: string;
  let s3: S3rver;
  let coord: CoordinatorProcess;
  const procs: Proc[] = [];
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-ens-redis-'));
    const store = await startS3(path.join(dir, 's3'));
    s3 = store.s3;
    coord = new CoordinatorProcess(await freePort(), path.join(dir, 'data'));
    const env = {
      ...BASE_ENV,
      ARCHIPELAGO_REDIS_URL: redisUrl,
      // A fresh key prefix: nothing of another run or test on this Redis interferes.
      ARCHIPELAGO_REDIS_PREFIX: `test-${path.basename(dir)}`,
      ARCHIPELAGO_LOCAL_JOBS: 'false',
      ...store.env(),
    };
    await coord.start(env);
    const spawnProc = (label: string, args: string[]) =>
      new Proc(
        label,
        spawn(process.execPath, [COORDINATOR_BIN, ...args], {
          env: {
            ...process.env,
            ...env,
            ARCHIPELAGO_ADMIN_KEY: ADMIN_KEY,
            ARCHIPELAGO_LOG_LEVEL: 'info',
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      );
    // Jobs in a separate process on the same database; sampling in a process that has only
    // Redis and S3 (its own empty data directory).
    procs.push(spawnProc('jobs', ['jobs', '--data-dir', path.join(dir, 'data'), '--no-sampling']));
    procs.push(spawnProc('sampler', ['sampler', '--data-dir', path.join(dir, 'sampler')]));
    await until(
      'the job and sampler processes',
      async () => procs.every((p) => /ready/.test(p.output)),
      60_000,
      100,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}\n${procs.map((p) => p.output).join('\n')}`);
    });
  });
  afterAll(async () => {
    for (const p of procs) if (p.running) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => p.exit(15_000).catch(() => p.kill('SIGKILL'))));
    await coord.stop();
    await s3.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('runs every job and sampling request on the other processes', async () => {
    // This scenario's DDPM-family expert is a v-prediction one (docs/method.md §10): trained by a
    // `--objective ddpm` worker, validated, converted and sampled like the epsilon expert above.
    const { run, workers } = await trainRun(coord, dir, 'v:1,fm:1');
    procs.push(...workers);
    const logs = () => `\n${procs.map((p) => p.output).join('\n')}`;
    await waitPublished(coord, run.id, logs());
    await checkPublished(coord, await coord.run(run.id), dir);
    const manifest = (
      await coord.api<EnsembleManifestV2>('GET', `/api/v1/runs/${run.id}/manifest.json`)
    ).body;
    expect(manifest.schema).toBe('archipelago.ensemble-manifest/v2');
    expect(manifest.experts.map((e) => e.spec).find((s) => s.name === 'ddpm')).toMatchObject({
      prediction: 'v',
    });
    // The work happened where it should: jobs in the job process, samples in the sampler.
    expect(procs[0]!.output).toMatch(/job succeeded/);
    expect(coord.proc!.output).not.toMatch(/job started/);
    expect(procs[1]!.output).toMatch(/sampler ready/);
    const { body: jobs } = await coord.api<{ jobs: { name: string; status: string }[] }>(
      'GET',
      '/api/v1/jobs?limit=50',
    );
    const names = jobs.jobs.filter((j) => j.status === 'succeeded').map((j) => j.name);
    for (const n of ['import-dataset', 'validate-checkpoint', 'train-router', 'publish-ensemble'])
      expect(names).toContain(n);
  }, 600_000);
});
