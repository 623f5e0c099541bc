#!/usr/bin/env node
// The coordinator's event loop while it samples (issue 13, point 8): a real coordinator started
// in this process (startServer, loopback, the embedded default: no Redis) with a published
// ensemble of the demo's shape (4 micro DiT experts with 4x4 patches, 1 DDPM + 3 FM, 16x16x1, 10
// classes, and its router, at initial weights: a forward pass costs the same whatever the
// weights), then BENCH_LOOP_REQUESTS (8) sampling requests over HTTP at once, from as many
// clients, with the demo's inference defaults (Heun, 16 steps, top-1) and BENCH_LOOP_COUNT (16)
// images each. Meanwhile the coordinator's event-loop delay (perf_hooks.monitorEventLoopDelay,
// 10 ms resolution; what it records is the interval between its 10 ms ticks, so the figures
// here are that minus the 10 ms: how late the loop came back), how late a 20 ms timer fires (the
// heartbeat bench's measure) and the latency of GET /readyz (one probe at a time, 50 ms apart) are
// recorded. Run twice: sampling on the event loop (computeThreads 0, as before) and on one compute
// thread (the default). One warm-up request first, so both are measured with the ensemble loaded.
// Then the same probes while one demo-shaped checkpoint is validated, on the loop and on the thread
// (measureValidation; BENCH_LOOP_VALIDATION=0 leaves it out).
// The HTTP clients share this process's event loop with the coordinator: their own work is a few
// fetches, small beside a sampling step. One JSON object per line on stdout.
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { ditConfigFromPreset, ExpertTrainer, RouterTrainer } from '@archipelago/models';
import { MANIFEST_V2_SCHEMA_ID } from '@archipelago/protocol';
import { adminApi } from './admin-api.mjs';

const REQUESTS = Number(process.env.BENCH_LOOP_REQUESTS ?? 8);
const COUNT = Number(process.env.BENCH_LOOP_COUNT ?? 16);
const MODES = (process.env.BENCH_LOOP_THREADS ?? '0,1')
  .split(',')
  .filter((m) => m !== '')
  .map(Number);
const ADMIN_KEY = 'bench-admin-key-0123456789abcdef';
const SIZE = 16;
const TARGET_P99_MS = 50;

const { loadConfig } = await import('../dist/config.js');
const { startServer } = await import('../dist/server.js');
const { signManifest } = await import('../dist/ensembles/manifest.js');
const { datasets, ensembles } = await import('../dist/db/schema/index.js');
const { newId } = await import('../dist/ids.js');
const { manifestKey } = await import('../dist/services/ensembles.js');
const { createRun } = await import('../dist/services/runs.js');
const { routerConfigFor } = await import('../dist/services/router-training.js');

const sha = (b) => createHash('sha256').update(b).digest('hex');

/** Build the demo-shaped ensemble, sign it with the coordinator's key and publish it there. */
async function publishDemoShaped(c) {
  const datasetId = newId('dataset');
  c.db
    .insert(datasets)
    .values({
      id: datasetId,
      name: 'bench',
      source: { kind: 'builtin', name: 'mnist' },
      count: 64,
      height: SIZE,
      width: SIZE,
      channels: 1,
      classNames: Array.from({ length: 10 }, (_, i) => String(i)),
      imagesKey: `datasets/${datasetId}/images.bin`,
      bytes: 64 * SIZE * SIZE,
      sha256: '0'.repeat(64),
      featureKind: 'pca',
      featureDim: 2,
      featuresKey: `datasets/${datasetId}/features.npy`,
      importMs: 1,
    })
    .run();
  const run = createRun(
    { db: c.db, jobs: { dispatch: () => {} } },
    { datasetId, experts: 4, stepsPerExpert: 10 },
  );
  const files = [];
  const file = async (uri, bytes) => {
    const f = {
      uri,
      key: `bench-ensembles/${sha(bytes)}/${uri}`,
      sha256: sha(bytes),
      bytes: bytes.length,
    };
    await c.store.put(f.key, Buffer.from(bytes));
    files.push(f);
    return f;
  };
  const config = ditConfigFromPreset('micro', {
    imageSize: SIZE,
    channels: 1,
    numClasses: 10,
    patchSize: 4,
  });
  const experts = [];
  for (let k = 0; k < 4; k++) {
    const spec =
      k < 1
        ? { name: 'ddpm', schedule: { kind: 'cosine' } }
        : { name: 'fm', timeSampling: { kind: 'uniform' } };
    const t = await ExpertTrainer.create({
      network: { kind: 'dit', config },
      objective: spec,
      optimizer: { learningRate: 1e-3 },
      seed: k,
    });
    const bytes = await t.save();
    await t.dispose();
    experts.push({
      cluster: k,
      objective: spec.name,
      spec,
      checkpoint: await file(`checkpoints/expert-${k}.safetensors`, bytes),
      steps: 0,
      trainImages: 0,
      validationLoss: 0.5,
      baselineLoss: 1,
    });
  }
  const rc = routerConfigFor(SIZE, 1, 4, 4);
  const r = await RouterTrainer.create({
    network: { kind: 'router', config: rc },
    optimizer: { learningRate: 1e-3 },
    seed: 0,
  });
  const routerBytes = await r.save();
  await r.dispose();
  const body = {
    schema: MANIFEST_V2_SCHEMA_ID,
    run: { id: run.id, name: run.name, objectives: 'ddpm:1,fm:3' },
    dataset: {
      id: datasetId,
      name: 'bench',
      count: 64,
      width: SIZE,
      height: SIZE,
      channels: 1,
      classNames: Array.from({ length: 10 }, (_, i) => String(i)),
      clusteringId: 'cl_bench',
      sizes: [16, 16, 16, 16],
      classCounts: [],
    },
    model: { preset: 'micro', architecture: { kind: 'dit', ...config } },
    experts,
    router: {
      checkpoint: await file('checkpoints/router.safetensors', routerBytes),
      architecture: { kind: 'router', ...rc },
      steps: 0,
      accuracy: { edges: [0, 1], accuracy: [0.5], chance: 0.25, counts: [4] },
    },
    // The demo's: DEFAULT_INFERENCE (services/ensembles.ts) with the top-1 routing it publishes.
    inference: {
      routing: 'top-1',
      topK: 2,
      threshold: 0.1,
      conversion: 'snr',
      alphaMin: 0.01,
      x0Clamp: 1,
      sampler: 'heun',
      steps: 16,
      guidance: 3,
      rationale: 'bench',
    },
    createdAt: new Date(0).toISOString(),
  };
  const manifest = signManifest(body, c.signingKey);
  const text = JSON.stringify(manifest);
  const stored = await c.store.put(manifestKey(manifest.id), Buffer.from(text));
  c.db
    .insert(ensembles)
    .values({
      id: manifest.id,
      runId: run.id,
      manifestKey: manifestKey(manifest.id),
      manifestSha256: stored.sha256 ?? '',
      routerKey: manifest.router.checkpoint.key,
      routerSha256: manifest.router.checkpoint.sha256,
      signature: manifest.signature.value,
      keyId: manifest.signature.keyId,
      defaults: manifest.inference,
    })
    .run();
  return manifest;
}

const pct = (sorted, p) =>
  sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
const round = (x, digits = 1) => (x === null ? null : Number(x.toFixed(digits)));
/** A monitorEventLoopDelay value (ns, its 10 ms tick included) as lateness in ms. */
const lateBy = (ns) => round(Math.max(0, ns / 1e6 - 10));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function measure(computeThreads) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'arch-bench-loop-'));
  const server = await startServer(
    loadConfig({
      dataDir: dir,
      port: 0,
      host: '127.0.0.1',
      logLevel: 'silent',
      adminKey: ADMIN_KEY,
      computeThreads,
      trustProxy: true,
      sampleRateLimit: 100_000,
      maxQueuedSamples: Math.max(8, REQUESTS),
    }),
    { handleSignals: false },
  );
  try {
    const manifest = await publishDemoShaped(server.coordinator);
    const url = `${server.url}/api/v1/ensembles/${manifest.id}/samples`;
    const sample = async (i) => {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': `198.51.100.${i + 1}` },
        body: JSON.stringify({ count: COUNT, seed: i }),
      });
      const json = await res.json();
      if (res.status !== 200) throw new Error(`sampling: ${res.status} ${JSON.stringify(json)}`);
      return json;
    };
    await sample(200); // warm-up: the ensemble loaded (on the thread that samples), kernels built
    const delay = monitorEventLoopDelay({ resolution: 10 });
    const readyz = [];
    let done = false;
    const probe = (async () => {
      while (!done) {
        const t0 = performance.now();
        const res = await fetch(`${server.url}/readyz`);
        await res.arrayBuffer();
        readyz.push(performance.now() - t0);
        await sleep(50);
      }
    })();
    const late = [];
    let expected = performance.now() + 20;
    const ticker = setInterval(() => {
      const now = performance.now();
      late.push(Math.max(0, now - expected));
      expected = now + 20;
    }, 20);
    const t0 = performance.now();
    delay.enable();
    const outs = await Promise.all(Array.from({ length: REQUESTS }, (_, i) => sample(i)));
    delay.disable();
    clearInterval(ticker);
    late.sort((a, b) => a - b);
    const seconds = (performance.now() - t0) / 1000;
    done = true;
    await probe;
    readyz.sort((a, b) => a - b);
    const settings = outs[0].settings;
    process.stdout.write(
      `${JSON.stringify({
        bench: 'event_loop',
        name: 'sampling_event_loop',
        mode: computeThreads === 0 ? 'on the event loop' : 'compute thread',
        compute_threads: computeThreads,
        requests: REQUESTS,
        count: COUNT,
        sampler: settings.sampler,
        steps: settings.steps,
        routing: settings.routing,
        seconds: round(seconds, 2),
        sample_seconds_mean: round(outs.reduce((a, o) => a + o.seconds, 0) / outs.length, 3),
        loop_delay_p50_ms: lateBy(delay.percentile(50)),
        loop_delay_p99_ms: lateBy(delay.percentile(99)),
        loop_delay_max_ms: lateBy(delay.max),
        timer_late_p99_ms: round(pct(late, 0.99)),
        readyz_probes: readyz.length,
        readyz_p50_ms: round(pct(readyz, 0.5)),
        readyz_p99_ms: round(pct(readyz, 0.99)),
        readyz_max_ms: round(readyz.at(-1) ?? null),
        target_p99_ms: TARGET_P99_MS,
        backend: server.coordinator.backend.name,
        cores: os.cpus().length,
      })}\n`,
    );
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The event loop while one demo-shaped checkpoint is validated (the validate-checkpoint job's
 * work: the built-in MNIST digits at 16x16 in 4 clusters, a micro DiT FM expert at initial weights
 * claiming its full training, judged through the whole acceptance test and rejected), judged on
 * the event loop and on the compute thread, with the same probes as above.
 */
async function measureValidation() {
  const { validateCheckpoint, expectedArchitecture, objectiveConfigOf } = await import(
    '../dist/services/validation.js'
  );
  const { checkpoints, experts, runs, shards } = await import('../dist/db/schema/index.js');
  const { eq } = await import('drizzle-orm');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'arch-bench-loop-'));
  const server = await startServer(
    loadConfig({
      dataDir: dir,
      port: 0,
      host: '127.0.0.1',
      logLevel: 'silent',
      adminKey: ADMIN_KEY,
    }),
    { handleSignals: false },
  );
  try {
    const api = adminApi(server.url, ADMIN_KEY);
    const imp = await api('POST', '/api/v1/datasets', {
      name: 'mnist-bench',
      source: { kind: 'builtin', name: 'mnist' },
      resolution: SIZE,
      channels: 1,
      cluster: { k: 4, seed: 1 },
    });
    let job = imp.job;
    while (job.status !== 'succeeded') {
      if (job.status === 'failed') throw new Error(`import failed: ${job.error}`);
      await sleep(200);
      job = await api('GET', `/api/v1/jobs/${job.id}`);
    }
    const datasetId = String(job.result.datasetId);
    const dataset = await api('GET', `/api/v1/datasets/${datasetId}`);
    const run = await api('POST', '/api/v1/runs', {
      datasetId,
      clusteringId: dataset.clusterings[0].id,
      experts: 4,
      objectives: 'ddpm:1,fm:3',
      model: 'micro',
      patchSize: 4,
      stepsPerExpert: 10,
    });
    const { db, store, log, compute } = server.coordinator;
    const runRow = db.select().from(runs).where(eq(runs.id, run.id)).get();
    const expert = db
      .select()
      .from(experts)
      .where(eq(experts.runId, run.id))
      .all()
      .find((e) => e.cluster === 1);
    const { kind: _kind, ...config } = expectedArchitecture(runRow);
    const trainer = await ExpertTrainer.create({
      network: { kind: 'dit', config },
      objective: objectiveConfigOf(expert),
      optimizer: { learningRate: 1e-3 },
      ema: { decay: 0.999 },
      seed: 1,
    });
    const shard = db.select().from(shards).where(eq(shards.id, expert.trainShardId)).get();
    const { loadCheckpoint, saveCheckpoint } = await import('@archipelago/models');
    const saved = loadCheckpoint(await trainer.save({ dataFingerprint: shard.sha256 }));
    await trainer.dispose();
    const bytes = await saveCheckpoint({
      params: saved.params,
      meta: { ...saved.meta, step: expert.targetSteps },
    });
    for (const [mode, deps] of [
      ['on the event loop', { db, store, log }],
      ['compute thread', { db, store, log, compute }],
    ]) {
      const id = newId('checkpoint');
      const key = `runs/${run.id}/experts/${expert.cluster}/${id}.safetensors`;
      const info = await store.put(key, bytes);
      db.insert(checkpoints)
        .values({
          id,
          expertId: expert.id,
          step: expert.targetSteps,
          key,
          sha256: info.sha256,
          bytes: bytes.byteLength,
          final: true,
          status: 'accepted',
        })
        .run();
      db.update(experts)
        .set({ status: 'validating', checkpointId: id, checkpointStep: expert.targetSteps })
        .where(eq(experts.id, expert.id))
        .run();
      const probes = startProbes(server.url);
      const t0 = performance.now();
      const outcome = await validateCheckpoint(deps, { expertId: expert.id, checkpointId: id });
      const seconds = (performance.now() - t0) / 1000;
      const p = await probes.stop();
      process.stdout.write(
        `${JSON.stringify({
          bench: 'event_loop',
          name: 'validation_event_loop',
          mode,
          verdict: outcome.accepted ? 'accepted' : 'rejected',
          reason: outcome.reason?.split(':')[0] ?? null,
          seconds: round(seconds, 2),
          ...p,
          target_p99_ms: TARGET_P99_MS,
          backend: server.coordinator.backend.name,
          cores: os.cpus().length,
        })}\n`,
      );
    }
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Event-loop delay, 20 ms timer lateness and /readyz latency until stop(). */
function startProbes(base) {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  const readyz = [];
  const late = [];
  let done = false;
  const probe = (async () => {
    while (!done) {
      const t0 = performance.now();
      const res = await fetch(`${base}/readyz`);
      await res.arrayBuffer();
      readyz.push(performance.now() - t0);
      await sleep(50);
    }
  })();
  let expected = performance.now() + 20;
  const ticker = setInterval(() => {
    const now = performance.now();
    late.push(Math.max(0, now - expected));
    expected = now + 20;
  }, 20);
  delay.enable();
  return {
    async stop() {
      delay.disable();
      clearInterval(ticker);
      done = true;
      await probe;
      readyz.sort((a, b) => a - b);
      late.sort((a, b) => a - b);
      return {
        loop_delay_p50_ms: lateBy(delay.percentile(50)),
        loop_delay_p99_ms: lateBy(delay.percentile(99)),
        loop_delay_max_ms: lateBy(delay.max),
        timer_late_p99_ms: round(pct(late, 0.99)),
        readyz_probes: readyz.length,
        readyz_p50_ms: round(pct(readyz, 0.5)),
        readyz_p99_ms: round(pct(readyz, 0.99)),
        readyz_max_ms: round(readyz.at(-1) ?? null),
      };
    },
  };
}

for (const threads of MODES) await measure(threads);
if (process.env.BENCH_LOOP_VALIDATION !== '0') await measureValidation();
