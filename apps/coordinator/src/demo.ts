import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Dataset, Job, JobAccepted, Run } from '@archipelago/protocol';
import { loadConfig } from './config.js';
import { progressPrinter } from './progress.js';
import { startServer } from './server.js';
import { renderExpertSamples } from './services/expert-samples.js';

export interface DemoOptions {
  out: string;
  experts: number;
  port: number;
  /** Worker processes spawned on this machine (objectives alternate ddpm, fm). */
  workers: number;
  /** Training steps per expert. */
  steps: number;
  batchSize: number;
  keepServing?: boolean;
}

/** The worker CLI, built beside the coordinator in this monorepo. */
const WORKER_BIN = fileURLToPath(new URL('../../worker/dist/bin.js', import.meta.url));

function spawnWorker(
  base: string,
  token: string,
  objective: 'ddpm' | 'fm',
  dir: string,
  log: string,
) {
  const out = openSync(log, 'a');
  return spawn(
    process.execPath,
    [
      WORKER_BIN,
      '--coordinator',
      base,
      '--token',
      token,
      '--objective',
      objective,
      '--work-dir',
      dir,
      '--name',
      path.basename(dir),
      '--exit-when-idle',
      '--backend',
      'wasm',
    ],
    { stdio: ['ignore', out, out] },
  );
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
      stepsPerExpert: opts.steps,
      checkpointInterval: Math.max(1, Math.floor(opts.steps / 4)),
      batchSize: opts.batchSize,
    });
    await writeFile(path.join(out, 'dataset.json'), `${JSON.stringify(dataset, null, 2)}\n`);
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
    // Volunteers: worker processes on this machine, leasing experts over the WebSocket.
    if (!existsSync(WORKER_BIN))
      throw new Error(`worker not built: ${WORKER_BIN} is missing (npm run build)`);
    const token = await api<{ token: string }>('POST', '/api/v1/tokens', { name: 'demo workers' });
    const workersDir = path.join(out, 'workers');
    await mkdir(workersDir, { recursive: true });
    const children: ChildProcess[] = [];
    const exits: Promise<number | null>[] = [];
    for (let i = 0; i < opts.workers; i++) {
      const objective = i % 2 === 0 ? 'ddpm' : 'fm';
      const child = spawnWorker(
        base,
        token.token,
        objective,
        path.join(workersDir, `worker-${i}`),
        path.join(workersDir, `worker-${i}.log`),
      );
      children.push(child);
      exits.push(new Promise((r) => child.once('exit', (code) => r(code))));
    }
    log(
      `\nTraining ${run.experts.length} experts (${opts.steps} steps each, batch ${opts.batchSize}) with ${opts.workers} worker processes (logs in ${workersDir})`,
    );
    const trainStart = performance.now();
    let trained: Run = run;
    let allExited = false;
    let lastLine = 0;
    void Promise.all(exits).then(() => {
      allExited = true;
    });
    try {
      for (;;) {
        await new Promise((r) => setTimeout(r, 1000));
        trained = await api<Run>('GET', `/api/v1/runs/${run.id}`);
        const parts = trained.experts.map(
          (e) =>
            `${e.cluster}:${e.objective} ${e.status === 'done' ? 'done' : `${e.step}/${e.targetSteps}`}${e.loss !== null ? ` (${e.loss.toFixed(3)})` : ''}`,
        );
        const line = `training  ${parts.join('  ')}`;
        if (process.stdout.isTTY)
          bar.update(
            line,
            trained.experts.filter((e) => e.status === 'done').length,
            trained.experts.length,
          );
        else if (performance.now() - lastLine > 10_000) {
          log(line);
          lastLine = performance.now();
        }
        if (trained.experts.every((e) => e.status === 'done')) break;
        if (trained.status === 'failed') throw new Error(`run ${run.id} failed: ${trained.error}`);
        if (allExited)
          throw new Error(`every worker exited before the run finished; see ${workersDir}`);
      }
    } finally {
      bar.done();
      for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
      await Promise.all(exits);
    }
    await writeFile(path.join(out, 'run.json'), `${JSON.stringify(trained, null, 2)}\n`);
    const samples = await renderExpertSamples(
      server.coordinator.db,
      server.coordinator.store,
      run.id,
      { perExpert: 12, steps: 20 },
    );
    if (samples) await writeFile(path.join(out, 'experts.png'), samples);
    log(
      `Trained ${trained.experts.length} experts in ${((performance.now() - trainStart) / 1000).toFixed(0)} s:`,
    );
    for (const e of trained.experts) {
      log(
        `  expert ${e.cluster} (${e.objective}${e.schedule ? `, ${e.schedule}` : ''}): step ${e.checkpointStep}/${e.targetSteps}, loss ${e.loss?.toFixed(4) ?? '-'}`,
      );
    }
    log(
      `Run ${run.id} is ${trained.status}; checkpoints are under ${path.join(dataDir, 'objects', 'objects', 'runs', run.id)}`,
    );
    log(`Outputs in ${out}:`);
    log('  clusters.png   one row of example digits per cluster');
    log('  dataset.json   the dataset, its clustering and shards (sha256, counts)');
    log('  run.json       the run and its trained experts');
    log(
      '  experts.png    one row of samples per expert, each from its own final checkpoint (20 Euler steps)',
    );
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
