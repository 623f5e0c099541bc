/**
 * The baselines the paper's comparisons need (issue 14), through the whole loop with real
 * processes on a tiny budget: a monolith run (K = 1: one shard holding the whole training set, one
 * expert, a router that always answers it) and a run on random shards of the semantic sizes. Each
 * is trained by a worker process, validated, routed, published as a signed manifest and sampled
 * over REST.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type {
  Dataset,
  Ensemble,
  EnsembleManifest,
  Run,
  SampleResponse,
} from '@archipelago/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoordinatorProcess, freePort, type Proc, startWorker, until } from './harness.js';

const STEPS = 12;

describe('baseline runs with real processes', () => {
  let dir: string;
  let coord: CoordinatorProcess;
  let token: string;
  let datasetId: string;
  const procs: Proc[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-baselines-'));
    coord = new CoordinatorProcess(await freePort(), path.join(dir, 'data'));
    await coord.start();
    token = (await coord.token('baselines')).token;
    datasetId = await coord.importMnist(2);
  });

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await coord?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Create a run, train it with one worker, and wait until it is published. */
  const trainAndPublish = async (label: string, body: Record<string, unknown>): Promise<Run> => {
    const created = await coord.createRun({
      datasetId,
      objectives: 'fm',
      model: 'tiny',
      stepsPerExpert: STEPS,
      checkpointInterval: STEPS,
      batchSize: 8,
      ...body,
    });
    // A worker with nothing to lease exits: start it once the clustering has bound the run.
    await until(`run ${label} to be clustered`, async () => {
      const r = await coord.run(created.id);
      if (r.status === 'failed') throw new Error(`run failed: ${r.error}`);
      return r.status === 'training';
    });
    const worker = startWorker(label, {
      coordinator: coord.url,
      token,
      objective: 'fm',
      workDir: path.join(dir, `w-${label}`),
    });
    procs.push(worker);
    const run = await until(
      `run ${label} to be published`,
      async () => {
        const r = await coord.run(created.id);
        if (r.status === 'failed') throw new Error(`run failed: ${r.error}`);
        return r.status === 'published' ? r : null;
      },
      50_000,
      100,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}\n${coord.proc?.output}\n${worker.output}`);
    });
    const { code } = await worker.exit();
    expect(code, worker.output).toBe(0);
    return run;
  };

  /** The run's published ensemble, its verified manifest, and a REST sample from it. */
  const published = async (run: Run) => {
    const { body } = await coord.api<{ ensembles: Ensemble[] }>(
      'GET',
      `/api/v1/runs/${run.id}/ensembles`,
    );
    expect(body.ensembles).toHaveLength(1);
    const ens = body.ensembles[0]!;
    const manifest = (await (
      await fetch(`${coord.url}${ens.manifestUrl}`)
    ).json()) as EnsembleManifest;
    const { body: verify } = await coord.api<{ ok: boolean }>(
      'GET',
      `/api/v1/ensembles/${ens.id}/verify`,
    );
    expect(verify.ok).toBe(true);
    const res = await fetch(`${coord.url}/api/v1/ensembles/${ens.id}/samples`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      // Class-conditional with guidance: p(c | k) and the guided combination with these shards.
      body: JSON.stringify({ count: 4, steps: 3, seed: 1, classes: [0, 1, 2, 3], guidance: 2 }),
    });
    expect(res.status).toBe(200);
    const samples = (await res.json()) as SampleResponse;
    expect(samples.images).toHaveLength(4);
    return { ens, manifest, samples };
  };

  it('a monolith (K = 1) trains one expert on the whole training set, publishes and samples', async () => {
    const run = await trainAndPublish('monolith', { experts: 1 });
    expect(run.experts).toHaveLength(1);
    const { body: dataset } = await coord.api<Dataset>('GET', `/api/v1/datasets/${datasetId}`);
    const clustering = dataset.clusterings.find((c) => c.id === run.clusteringId)!;
    expect(clustering.k).toBe(1);
    expect(clustering.sizes).toEqual([dataset.count]);
    const expert = run.experts[0]!;
    expect(expert.size! + expert.valSize!).toBe(dataset.count);

    const { ens, manifest, samples } = await published(run);
    expect(manifest.experts).toHaveLength(1);
    expect(manifest.dataset.sizes).toEqual([dataset.count]);
    // One expert: the router has nothing to choose, and always answers it.
    expect(ens.routerAccuracy.chance).toBe(1);
    for (const s of samples.routing.steps) expect(s.rows).toEqual([4]);
    expect(samples.routing.meanExpertsPerSample).toBe(1);
  });

  it('a run on random shards of the semantic sizes trains, publishes saying so, and samples', async () => {
    const run = await trainAndPublish('random', { experts: 2, assignment: 'random' });
    const { body: dataset } = await coord.api<Dataset>('GET', `/api/v1/datasets/${datasetId}`);
    const semantic = dataset.clusterings.find((c) => c.k === 2 && c.assignment === 'semantic')!;
    const random = dataset.clusterings.find((c) => c.id === run.clusteringId)!;
    expect(random.assignment).toBe('random');
    expect(random.sizes).toEqual(semantic.sizes);

    const { ens, manifest, samples } = await published(run);
    expect(manifest.experts).toHaveLength(2);
    expect(manifest.dataset.assignment).toBe('random');
    expect(manifest.dataset.sizes).toEqual(semantic.sizes);
    expect(ens.routerAccuracy.accuracy).toHaveLength(10);
    for (const s of samples.routing.steps) expect(s.rows.reduce((a, b) => a + b, 0)).toBe(4);
  });
});
