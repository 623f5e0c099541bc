/**
 * DDPM -> FM initialisation that keeps experts isolated (docs/method.md §7, issue 14), through the
 * whole loop with real processes on a tiny budget: a monolith DDPM run (K = 1, the whole training
 * set) is trained and published; a two-expert FM run names it as `initFrom`, and each of its FM
 * experts is granted, converts and trains from the monolith's final checkpoint; the run publishes
 * and samples.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Ensemble, EnsembleManifest, Run, SampleResponse } from '@archipelago/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CoordinatorProcess, freePort, type Proc, startWorker, until } from './harness.js';

const STEPS = 4;

describe('FM experts initialised from an organiser-named DDPM run', () => {
  let dir: string;
  let coord: CoordinatorProcess;
  let token: string;
  let datasetId: string;
  const procs: Proc[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'arch-init-from-'));
    coord = new CoordinatorProcess(await freePort(), path.join(dir, 'data'));
    await coord.start();
    token = (await coord.token('init-from')).token;
    datasetId = await coord.importMnist(2);
  });

  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await coord?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Train a run with one worker of `objective` until it is published; the worker's output. */
  const trainAndPublish = async (
    label: string,
    objective: 'ddpm' | 'fm',
    body: Record<string, unknown>,
  ): Promise<{ run: Run; output: string }> => {
    const created = await coord.createRun({
      datasetId,
      objectives: objective,
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
      objective,
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
    return { run, output: worker.output };
  };

  const manifestOf = async (run: Run): Promise<{ ens: Ensemble; manifest: EnsembleManifest }> => {
    const { body } = await coord.api<{ ensembles: Ensemble[] }>(
      'GET',
      `/api/v1/runs/${run.id}/ensembles`,
    );
    expect(body.ensembles).toHaveLength(1);
    const ens = body.ensembles[0]!;
    const manifest = (await (
      await fetch(`${coord.url}${ens.manifestUrl}`)
    ).json()) as EnsembleManifest;
    return { ens, manifest };
  };

  it('a K = 1 DDPM run is the donor of a 2-expert FM run, whose experts convert its final checkpoint, train and publish', async () => {
    const { run: donor } = await trainAndPublish('donor', 'ddpm', { experts: 1 });
    const { manifest: donorManifest } = await manifestOf(donor);
    const donorSha = donorManifest.experts[0]!.checkpoint.sha256;

    const { run, output } = await trainAndPublish('fm', 'fm', {
      experts: 2,
      initFrom: { runId: donor.id, cluster: 0 },
    });
    expect(run.config.initFrom).toEqual({
      runId: donor.id,
      cluster: 0,
      expertId: donor.experts[0]!.id,
    });
    // Both FM experts started from the donor's final checkpoint, converted (§7), none from scratch.
    const converted = output.match(/DDPM checkpoint [0-9a-f]{12} converted to flow matching/g);
    expect(converted).toEqual([
      `DDPM checkpoint ${donorSha.slice(0, 12)} converted to flow matching`,
      `DDPM checkpoint ${donorSha.slice(0, 12)} converted to flow matching`,
    ]);
    expect(output).not.toContain('random initialisation');

    const { ens, manifest } = await manifestOf(run);
    expect(manifest.experts.map((e) => e.objective)).toEqual(['fm', 'fm']);
    const { body: verify } = await coord.api<{ ok: boolean }>(
      'GET',
      `/api/v1/ensembles/${ens.id}/verify`,
    );
    expect(verify.ok).toBe(true);
    const res = await fetch(`${coord.url}/api/v1/ensembles/${ens.id}/samples`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ count: 2, steps: 3, seed: 1 }),
    });
    expect(res.status).toBe(200);
    const samples = (await res.json()) as SampleResponse;
    expect(samples.images).toHaveLength(2);
  });
});
