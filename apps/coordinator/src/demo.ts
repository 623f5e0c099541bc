import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, openSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type {
  Dataset,
  EnsembleList,
  EnsembleManifest,
  EnsembleScoreReply,
  Job,
  JobAccepted,
  Run,
  SampleResponse,
} from '@archipelago/protocol';
import { loadConfig } from './config.js';
import { progressPrinter } from './progress.js';
import { startServer } from './server.js';
import { renderExpertSamples } from './services/expert-samples.js';

export interface DemoOptions {
  out: string;
  experts: number;
  port: number;
  /** Worker processes spawned on this machine (see demoWorkerObjective). */
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
  objective: 'any' | 'fm',
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

/**
 * Wait for the coordinator's score of the ensemble (`GET /api/v1/ensembles/:id/score`), write
 * score.json and score.png to `out`, and say what it is (or why there is none).
 */
async function waitForScore(
  base: string,
  id: string,
  out: string,
  onProgress: (p: Job['progress']) => void,
): Promise<string> {
  for (;;) {
    const res = await fetch(`${base}/api/v1/ensembles/${id}/score`);
    const body = (await res.json()) as EnsembleScoreReply & {
      error?: { code: string; message: string; details?: { progress?: Job['progress'] } };
    };
    if (res.ok) {
      await writeFile(path.join(out, 'score.json'), `${JSON.stringify(body, null, 2)}\n`);
      const png = await fetch(`${base}${body.figureUrl}`);
      await writeFile(path.join(out, 'score.png'), Buffer.from(await png.arrayBuffer()));
      const s = body.scores;
      const r = body.reference;
      const f = (v: number | null, d = 3) => (v === null ? 'n/a' : v.toFixed(d));
      return `Scored on ${body.settings.samples} samples: ${body.metricName} ${f(s.fdCls, 2)} (real train images: ${f(r.fdCls, 2)}), precision ${f(s.precision)}, recall ${f(s.recall)}, intra-class diversity ${f(s.intraClassDiversity)}, components per digit ${f(s.fragments.generated.meanComponents, 2)} (real ${f(r.fragments.meanComponents, 2)})`;
    }
    if (body.error?.code !== 'score_pending')
      return `No score: ${body.error?.code}: ${body.error?.message}`;
    onProgress(body.error.details?.progress ?? null);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * Training settings of the demo, chosen (by measuring on 2 cores) to give recognisable digits in
 * minutes: MNIST downsampled to 16x16 (USPS's size) with 4x4 patches (16 tokens, as cheap per
 * image as 7x7 patches on 28x28 but with a 16-value patch to predict instead of 49), the micro
 * DiT (1.7x faster per step than tiny, so 1,000 steps fit where 600 did), logit-normal
 * training times for the FM experts (cleaner strokes than uniform at this budget), a high learning
 * rate after warm-up, class labels for classifier-free guidance.
 */
export const DEMO_DEFAULTS = {
  model: 'micro',
  steps: 1000,
  batchSize: 32,
  learningRate: 2e-3,
  resolution: 16,
  patchSize: 4,
  fmTimeSampling: 'logit-normal',
  guidance: 3,
} as const;

/** Whether an expert's objective spec is a DDPM one that predicts v. */
function predictsV(spec: unknown): boolean {
  return (spec as { prediction?: string } | null)?.prediction === 'v';
}

/**
 * Objective mix of the demo: a quarter DDPM (at least one), the rest flow matching — the paper's
 * 2 DDPM : 6 FM ratio. The DDPM experts predict v (same cosine schedule, converted to velocity
 * like any DDPM expert): at the demo's budget an epsilon expert's samples score 6.4x an FM expert's
 * FD-cls on the same cluster with the same compute, a v-prediction expert's 1.05x
 * (docs/results.md §1, docs/method.md §14).
 */
export function demoObjectives(k: number): string {
  if (k < 2) return 'fm';
  const ddpm = Math.max(1, Math.floor(k / 4));
  return `v:${ddpm},fm:${k - ddpm}`;
}

/**
 * The demo's volunteers: the first takes any objective (and so the DDPM experts), the others flow
 * matching only, so that with a quarter DDPM the work stays balanced.
 */
export function demoWorkerObjective(i: number): 'any' | 'fm' {
  return i === 0 ? 'any' : 'fm';
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
      resolution: DEMO_DEFAULTS.resolution,
      // Every seed finds the same four digit groups; seed 1 numbers them so that cluster 0, the
      // DDPM expert's, is the 0s (as the demo has always shown).
      cluster: { k: opts.experts, seed: 1 },
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
      // The clustering shown above (clusters.png), not a new one with the run's own seed.
      clusteringId: clustering.id,
      experts: opts.experts,
      objectives: demoObjectives(opts.experts),
      model: DEMO_DEFAULTS.model,
      patchSize: DEMO_DEFAULTS.patchSize,
      fmTimeSampling: DEMO_DEFAULTS.fmTimeSampling,
      learningRate: DEMO_DEFAULTS.learningRate,
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
        `  expert ${e.cluster}: ${String(size).padStart(5)} images (${((100 * size) / total).toFixed(1)} %), objective ${e.objective}${e.schedule ? ` (${e.schedule}${predictsV(e.spec) ? ', v-prediction' : ''})` : ''}, ${e.status}`,
      );
    }
    // Workers started with --exit-when-idle leave at their first lease.none: only once the run
    // can lease (it already can with an existing clustering; this guards a slower path).
    for (let r = run; r.status === 'draft' || r.status === 'clustering'; ) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      r = await api<Run>('GET', `/api/v1/runs/${run.id}`);
      if (r.status === 'failed') throw new Error(`run ${run.id} failed: ${r.error}`);
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
      const objective = demoWorkerObjective(i);
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
        // Trained: every final checkpoint is in (validation, a coordinator job, follows).
        if (trained.experts.every((e) => e.status === 'done' || e.status === 'validating')) break;
        if (trained.status === 'failed') throw new Error(`run ${run.id} failed: ${trained.error}`);
        if (allExited)
          throw new Error(`every worker exited before the run finished; see ${workersDir}`);
      }
    } finally {
      bar.done();
      for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
      await Promise.all(exits);
    }
    log(
      `Trained ${trained.experts.length} experts in ${((performance.now() - trainStart) / 1000).toFixed(0)} s; validating, training the router, publishing`,
    );
    // The coordinator takes it from here: validation of each final checkpoint, router training,
    // manifest publishing; all jobs. Show the running job's progress until the run is published.
    const routeStart = performance.now();
    for (;;) {
      trained = await api<Run>('GET', `/api/v1/runs/${run.id}`);
      if (trained.status === 'published') break;
      if (trained.status === 'failed') throw new Error(`run ${run.id} failed: ${trained.error}`);
      const rejected = trained.experts.find((e) => e.status === 'pending');
      if (rejected && allExited)
        throw new Error(
          `expert ${rejected.cluster} was sent back to training (validation rejected its checkpoint: see GET /api/v1/runs/${run.id}/events)`,
        );
      const running = await api<{ jobs: Job[] }>('GET', '/api/v1/jobs?status=running&limit=1');
      const p = running.jobs[0]?.progress;
      if (p) bar.update(`${running.jobs[0]!.name}: ${p.stage}`, p.done, p.total);
      await new Promise((r) => setTimeout(r, 500));
    }
    bar.done();
    await writeFile(path.join(out, 'run.json'), `${JSON.stringify(trained, null, 2)}\n`);
    for (const e of trained.experts) {
      log(
        `  expert ${e.cluster} (${e.objective}${e.schedule ? `, ${e.schedule}` : ''}): step ${e.checkpointStep}/${e.targetSteps}, train loss ${e.loss?.toFixed(4) ?? '-'}, held-out loss ${e.validationLoss?.toFixed(4) ?? '-'} (untrained ${e.validationBaseline?.toFixed(4) ?? '-'})`,
      );
    }
    const { ensembles } = await api<EnsembleList>('GET', `/api/v1/runs/${run.id}/ensembles`);
    const ensemble = ensembles[0]!;
    const acc = ensemble.routerAccuracy;
    log(
      `Published ensemble ${ensemble.id} in ${((performance.now() - routeStart) / 1000).toFixed(0)} s; router accuracy by noise level t (chance ${acc.chance.toFixed(2)}): ${acc.accuracy.map((a, i) => `${acc.edges[i]!.toFixed(1)}:${a.toFixed(2)}`).join(' ')}`,
    );
    log(`  default routing ${ensemble.inference.routing}: ${ensemble.inference.rationale}`);

    // The consumer's view: the signed manifest and its checkpoints, next to each other, so that
    // `sample --manifest DIR/manifest.json` works with no coordinator; and the coordinator's
    // signing key (GET /api/v1/keys) for it to verify against (`--public-key-file DIR/keys.json`).
    await writeFile(path.join(out, 'keys.json'), await (await fetch(`${base}/api/v1/keys`)).text());
    const manifestRes = await fetch(`${base}/api/v1/runs/${run.id}/manifest.json`);
    const manifestText = await manifestRes.text();
    await writeFile(path.join(out, 'manifest.json'), manifestText);
    const manifest = JSON.parse(manifestText) as EnsembleManifest;
    await mkdir(path.join(out, 'checkpoints'), { recursive: true });
    for (const file of [...manifest.experts.map((e) => e.checkpoint), manifest.router.checkpoint]) {
      const res = await fetch(new URL(file.uri, `${base}/api/v1/ensembles/${manifest.id}/`));
      await writeFile(path.join(out, file.uri), Buffer.from(await res.arrayBuffer()));
    }

    // Ask the sampling endpoint for each digit, one column per class.
    const classes = Array.from({ length: 60 }, (_, i) => i % 10);
    const request = {
      count: classes.length,
      classes,
      seed: 0,
      guidance: DEMO_DEFAULTS.guidance,
      columns: 10,
    };
    const sampleStart = performance.now();
    const png = await fetch(`${base}/api/v1/ensembles/${ensemble.id}/samples`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'image/png' },
      body: JSON.stringify(request),
    });
    if (!png.ok) throw new Error(`sampling failed: ${png.status} ${await png.text()}`);
    await writeFile(path.join(out, 'samples.png'), Buffer.from(await png.arrayBuffer()));
    const sampleSeconds = (performance.now() - sampleStart) / 1000;
    const stats = await api<SampleResponse>('POST', `/api/v1/ensembles/${ensemble.id}/samples`, {
      ...request,
      count: 20,
      classes: classes.slice(0, 20),
    });
    await writeFile(
      path.join(out, 'samples.json'),
      `${JSON.stringify({ ...stats, images: `${stats.images.length} PNGs (omitted)` }, null, 2)}\n`,
    );
    log(
      `Sampled ${request.count} digits (6 of each class, ${stats.settings.sampler} ${stats.settings.steps} steps, routing ${stats.settings.routing}, guidance ${stats.settings.guidance}) in ${sampleSeconds.toFixed(1)} s; expert evaluations ${stats.routing.totals.join(' / ')} (20-sample request)`,
    );
    const samples = await renderExpertSamples(
      server.coordinator.db,
      server.coordinator.store,
      run.id,
      { perExpert: 12, steps: 20 },
    );
    if (samples) await writeFile(path.join(out, 'experts.png'), samples);

    // The coordinator scores every new ensemble (the score-ensemble job, started on publishing).
    const scoreStart = performance.now();
    const scoreLine = await waitForScore(base, ensemble.id, out, (p) => {
      if (p) bar.update(`scoring: ${p.stage}`, p.done, p.total);
    });
    bar.done();
    log(`${scoreLine} (waited ${((performance.now() - scoreStart) / 1000).toFixed(1)} s)`);
    log(
      `\nDone in ${((performance.now() - started) / 1000 / 60).toFixed(1)} min. Outputs in ${out}:`,
    );
    log('  samples.png    digits 0-9 (one column per class) from the sampling endpoint');
    log('  manifest.json  the signed ensemble manifest; checkpoints/ holds the files it names');
    log("  keys.json      the coordinator's signing key (GET /api/v1/keys), pinned for sample");
    log('  samples.json   routing statistics of a sampling call (which experts ran, how often)');
    log('  experts.png    one row per expert, unconditional samples from its checkpoint alone');
    log("  score.json     the ensemble's score (GET /api/v1/ensembles/:id/score); score.png");
    log('  clusters.png   one row of example digits per cluster');
    log('  dataset.json, run.json');
    log(
      `Offline: node apps/coordinator/dist/sample-bin.js --manifest ${path.join(out, 'manifest.json')} --public-key-file ${path.join(out, 'keys.json')} --out grid.png`,
    );
    log(`Dashboard: ${base}/#/runs/${run.id}   API docs: ${base}/docs`);
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
