import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Dataset, Job, JobAccepted, Run } from '@archipelago/protocol';
import { loadConfig } from './config.js';
import { progressPrinter } from './progress.js';
import { startServer } from './server.js';

export interface DemoOptions {
  out: string;
  experts: number;
  port: number;
  keepServing?: boolean;
}

const MARKER = '.archipelago-demo';

/** Objective mix of the demo: half DDPM (rounded down, at least one), the rest flow matching. */
export function demoObjectives(k: number): string {
  if (k < 2) return 'fm';
  const ddpm = Math.max(1, Math.floor(k / 2));
  return `ddpm:${ddpm},fm:${k - ddpm}`;
}

/**
 * The main job on embedded defaults: a real coordinator (SQLite, local object store, in-process
 * jobs) on loopback; the built-in MNIST digits imported and clustered through the REST API; a
 * run with mixed objectives created over the clusters. Outputs land in `out`.
 */
export async function runDemo(opts: DemoOptions): Promise<void> {
  const out = path.resolve(opts.out);
  const dataDir = path.join(out, 'data');
  // Only ever wipe a data dir the demo itself made.
  if (existsSync(path.join(dataDir, MARKER))) await rm(dataDir, { recursive: true, force: true });
  else if (existsSync(dataDir))
    throw new Error(`${dataDir} exists and was not made by the demo; choose another --out`);
  await mkdir(dataDir, { recursive: true });
  await writeFile(
    path.join(dataDir, MARKER),
    'made by `coordinator demo`; deleted by the next demo run\n',
  );

  const adminKey = `ak_demo_${randomBytes(18).toString('base64url')}`;
  const config = loadConfig({
    dataDir,
    port: opts.port,
    host: '127.0.0.1',
    logLevel: 'warn',
    adminKey,
  });
  const server = await startServer(config, { handleSignals: Boolean(opts.keepServing) });
  const base = server.url;
  const api = async <T>(method: string, route: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${base}${route}`, {
      method,
      headers: {
        authorization: `Bearer ${adminKey}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${route} -> ${res.status}: ${text}`);
    return JSON.parse(text) as T;
  };
  const log = (line: string) => process.stdout.write(`${line}\n`);

  try {
    log(`Archipelago demo: coordinator at ${base} (data in ${dataDir})`);
    const started = performance.now();
    const accepted = await api<JobAccepted>('POST', '/api/v1/datasets', {
      name: 'mnist-demo',
      source: { kind: 'builtin', name: 'mnist' },
      cluster: { k: opts.experts, seed: 0 },
    });
    const bar = progressPrinter(process.stdout);
    let job: Job = accepted.job;
    while (job.status === 'queued' || job.status === 'running') {
      await new Promise((r) => setTimeout(r, 200));
      job = await api<Job>('GET', accepted.links.job);
      if (job.progress) bar.update(job.progress.stage, job.progress.done, job.progress.total);
    }
    bar.done();
    if (job.status !== 'succeeded') throw new Error(`import job ${job.id} failed: ${job.error}`);
    const datasetId = String(job.result?.datasetId);
    const dataset = await api<Dataset>('GET', `/api/v1/datasets/${datasetId}`);
    const clustering = dataset.clusterings[0]!;
    const preview = await fetch(`${base}${clustering.previewUrl}`);
    await writeFile(path.join(out, 'clusters.png'), Buffer.from(await preview.arrayBuffer()));
    const run = await api<Run>('POST', '/api/v1/runs', {
      name: 'mnist demo',
      datasetId,
      experts: opts.experts,
      objectives: demoObjectives(opts.experts),
      model: 'tiny',
      stepsPerExpert: 2000,
      checkpointInterval: 200,
    });
    await writeFile(path.join(out, 'dataset.json'), `${JSON.stringify(dataset, null, 2)}\n`);
    await writeFile(path.join(out, 'run.json'), `${JSON.stringify(run, null, 2)}\n`);
    const total = clustering.sizes.reduce((a, b) => a + b, 0);
    log(
      `\nImported ${dataset.count} MNIST digits (${dataset.width}x${dataset.height}, features ${dataset.featureKind}-${dataset.featureDim}) and clustered them into K=${clustering.k} shards in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    log(
      `  inertia ${clustering.inertia.toFixed(1)} (fine level: ${clustering.fineK} centroids, inertia ${clustering.fineInertia.toFixed(1)})`,
    );
    for (const e of run.experts) {
      const size = clustering.sizes[e.cluster] ?? 0;
      log(
        `  expert ${e.cluster}: ${String(size).padStart(5)} images (${((100 * size) / total).toFixed(1)} %), objective ${e.objective}${e.schedule ? ` (${e.schedule})` : ''}, ${e.status}`,
      );
    }
    log(`\nRun ${run.id} is ${run.status}: ${run.experts.length} experts wait for workers.`);
    log(`Outputs in ${out}:`);
    log('  clusters.png   one row of example digits per cluster');
    log('  dataset.json   the dataset, its clustering and shards (sha256, counts)');
    log('  run.json       the run and its experts');
    log(`API docs: ${base}/docs   run: ${base}/api/v1/runs/${run.id}`);
    if (opts.keepServing) {
      log(`\nServing until Ctrl-C. Admin key for this demo: ${adminKey}`);
      return;
    }
  } catch (err) {
    await server.close();
    throw err;
  }
  await server.close();
}
