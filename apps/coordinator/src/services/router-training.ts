/**
 * Router training (docs/method.md §5): once every expert is validated (or on demand), train the small
 * router classifier on FM-noised images of all shards in their natural proportions, with each
 * image's cluster as its label, then measure its accuracy per noise level on the held-out splits.
 * A class-conditional run's router also reads each image's class: every image of a batch is seen
 * twice, with its class and with the null class ({@link classRouterBatch}), so the one network
 * gives p(k | x_t, c) for a class-conditional request and p(k | x_t) for an unconditional one,
 * each trained on every image (docs/method.md §5 says why and what measured it).
 */
import { createHash } from 'node:crypto';
import { createRng, decodeShard, deriveSeed, type ImageSet } from '@archipelago/data';
import { RouterTrainer } from '@archipelago/models';
import type { RouterAccuracy } from '@archipelago/protocol';
import type { ObjectStore } from '@archipelago/storage';
import { eq } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { ComputePool } from '../compute/compute-pool.js';
import type { Db, Tx } from '../db/database.js';
import { experts, routers, runs, shards } from '../db/schema/index.js';
import { PermanentJobError } from '../errors.js';
import { newId } from '../ids.js';
import { EVENTS, recordEvent } from '../lifecycle/events.js';
import { publishWithRouter } from '../lifecycle/pipeline.js';

export interface RouterTrainingDeps {
  db: Db;
  store: ObjectStore;
  log: Logger;
  steps: number;
  /** Train on a compute thread (compute/compute-pool.ts) instead of on this event loop. */
  compute?: ComputePool;
}

/**
 * What fitting a router needs, read from the database first: fitting itself only reads shards
 * from the object store, so it can run on a compute thread; the main thread stores the router
 * and records it ({@link trainRouter}).
 */
export interface RouterFitInput {
  runId: string;
  seed: number;
  steps: number;
  /**
   * Classes the router is conditioned on: the run's (0: unconditional). Absent in jobs queued
   * before the option: 0, the router those runs had.
   */
  numClasses?: number;
  /** Each cluster's train and val shard, by cluster (0..K-1). */
  shards: { train: { key: string }; val: { key: string } }[];
}

export interface RouterFit {
  /** The router's checkpoint (safetensors). */
  bytes: Uint8Array;
  config: ReturnType<typeof routerConfigFor>;
  steps: number;
  loss: number;
  accuracy: RouterAccuracy;
}

export interface RouterPayload {
  runId: string;
  /** Publish an ensemble with the new router when done (default true). */
  publish?: boolean;
}

/** Images per router training step. */
export const ROUTER_BATCH = 64;
const LEARNING_RATE = 1e-3;
const WARMUP = 50;

/**
 * A class-conditional router's batch: the images twice, first with their classes, then with the
 * null class `numClasses` (each row noised on its own). Label dropout as the experts use it (10 %
 * null) left the null class under-trained: at the default 400 steps its p(k | x_t) was markedly
 * worse than an unconditional router's (docs/method.md §5, bench/class-routing.mjs).
 */
export function classRouterBatch(
  pixels: Float32Array,
  clusters: Int32Array,
  labels: Int32Array,
  numClasses: number,
): { pixels: Float32Array; clusters: Int32Array; labels: Int32Array } {
  const n = clusters.length;
  const x = new Float32Array(2 * pixels.length);
  x.set(pixels, 0);
  x.set(pixels, pixels.length);
  const y = new Int32Array(2 * n);
  y.set(clusters, 0);
  y.set(clusters, n);
  const c = new Int32Array(2 * n).fill(numClasses);
  c.set(labels, 0);
  return { pixels: x, clusters: y, labels: c };
}

/** The router's learning rate at `step`: linear warm-up over the first {@link WARMUP} steps. */
export function routerLearningRate(step: number): number {
  return LEARNING_RATE * Math.min(1, (step + 1) / WARMUP);
}
/** Held-out noise draws per validation image. */
const EVAL_REPEATS = 8;
const BINS = 10;

/** The router's size: small next to the experts (the papers use ~4% of training FLOPs). */
export function routerConfigFor(
  imageSize: number,
  channels: number,
  patchSize: number,
  k: number,
  numClasses = 0,
) {
  return {
    imageSize,
    channels,
    patchSize,
    hidden: 64,
    depth: 2,
    heads: 4,
    mlpRatio: 2,
    numClusters: k,
    // Conditional routers only: an unconditional router's config is what it was before.
    ...(numClasses > 0 ? { numClasses } : {}),
  };
}

interface Union {
  pixels: Float32Array;
  clusters: Int32Array;
  labels: Int32Array;
  count: number;
  shape: [number, number, number];
}

function union(sets: ImageSet[]): Union {
  const first = sets[0]!;
  const size = first.height * first.width * first.channels;
  const count = sets.reduce((n, s) => n + s.count, 0);
  const pixels = new Float32Array(count * size);
  const clusters = new Int32Array(count);
  const labels = new Int32Array(count);
  let row = 0;
  sets.forEach((s, k) => {
    for (let i = 0; i < s.count * size; i++) pixels[row * size + i] = s.pixels[i]! / 127.5 - 1;
    clusters.fill(k, row, row + s.count);
    labels.set(s.labels, row);
    row += s.count;
  });
  return { pixels, clusters, labels, count, shape: [first.height, first.width, first.channels] };
}

/** The database half before training: the run must exist, be live, and have every expert done. */
export function prepareRouter(db: Db, payload: RouterPayload, steps: number): RouterFitInput {
  const run = db.select().from(runs).where(eq(runs.id, payload.runId)).get();
  if (!run) throw new PermanentJobError(`run ${payload.runId} does not exist`);
  if (run.status === 'cancelled' || run.status === 'failed')
    throw new PermanentJobError(`run ${run.id} is ${run.status}`);
  const ex = db.select().from(experts).where(eq(experts.runId, run.id)).all();
  const notDone = ex.filter((e) => e.status !== 'done');
  if (notDone.length > 0) {
    throw new PermanentJobError(
      `the router needs every expert done; expert ${notDone[0]!.cluster} is ${notDone[0]!.status}`,
    );
  }
  if (!run.clusteringId) throw new PermanentJobError(`run ${run.id} has no clustering`);
  const rows = db
    .select()
    .from(shards)
    .where(eq(shards.clusteringId, run.clusteringId))
    .all()
    .sort((a, b) => a.cluster - b.cluster);
  const K = ex.length;
  const pairs: RouterFitInput['shards'] = [];
  for (let k = 0; k < K; k++) {
    const pick = (split: 'train' | 'val') => {
      const s = rows.find((r) => r.cluster === k && r.split === split);
      if (!s) throw new PermanentJobError(`cluster ${k} has no ${split} shard`);
      return { key: s.key };
    };
    pairs.push({ train: pick('train'), val: pick('val') });
  }
  return {
    runId: run.id,
    seed: run.config.seed,
    steps,
    numClasses: run.config.numClasses,
    shards: pairs,
  };
}

/** A trained router as stored: what {@link applyRouter} records (plain JSON). */
export interface StoredRouter {
  routerId: string;
  key: string;
  sha256: string;
  bytes: number;
  steps: number;
  loss: number;
  config: RouterFit['config'];
  accuracy: RouterAccuracy;
}

/**
 * The store half: fit the router (on the compute pool when there is one) and store its bytes,
 * content-addressed and create-only like accepted expert checkpoints (what a manifest names).
 */
export async function computeRouter(
  deps: { store: ObjectStore; log: Logger; compute?: ComputePool | undefined },
  input: RouterFitInput,
  progress: (stage: string, done: number, total: number) => void = () => {},
): Promise<StoredRouter> {
  const fit = deps.compute
    ? await deps.compute.run('fit-router', input, { onProgress: progress })
    : await fitRouter(deps.store, deps.log, input, progress);
  const { bytes, config, accuracy } = fit;
  const routerId = newId('router');
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const key = `runs/${input.runId}/router/${routerId}-${sha256}.safetensors`;
  await deps.store.put(key, bytes, { sha256, createOnly: true });
  return {
    routerId,
    key,
    sha256,
    bytes: bytes.byteLength,
    steps: fit.steps,
    loss: fit.loss,
    config,
    accuracy,
  };
}

/** Record a stored router in `tx` (once) and, unless told not to, queue publishing with it. */
export function applyRouter(
  tx: Tx,
  payload: RouterPayload,
  stored: StoredRouter,
): { routerId: string; accuracy: RouterAccuracy; publishJobId?: string } {
  const id = stored.routerId;
  const { accuracy } = stored;
  if (tx.select().from(routers).where(eq(routers.id, id)).get()) return { routerId: id, accuracy };
  tx.insert(routers)
    .values({
      id,
      runId: payload.runId,
      key: stored.key,
      sha256: stored.sha256,
      bytes: stored.bytes,
      steps: stored.steps,
      architecture: { kind: 'router', ...stored.config },
      accuracy,
    })
    .run();
  recordEvent(tx, EVENTS.routerTrained, {
    runId: payload.runId,
    data: {
      routerId: id,
      steps: stored.steps,
      loss: stored.loss,
      accuracy: accuracy.accuracy,
      chance: accuracy.chance,
    },
  });
  const publishJobId =
    payload.publish !== false ? publishWithRouter(tx, payload.runId, id)?.id : undefined;
  return { routerId: id, accuracy, ...(publishJobId ? { publishJobId } : {}) };
}

export async function trainRouter(
  deps: RouterTrainingDeps,
  payload: RouterPayload,
  progress: (stage: string, done: number, total: number) => void = () => {},
): Promise<{ routerId: string; accuracy: RouterAccuracy; publishJobId?: string }> {
  const input = prepareRouter(deps.db, payload, deps.steps);
  const stored = await computeRouter(deps, input, progress);
  return deps.db.transaction((tx) => applyRouter(tx, payload, stored));
}

/** Train and evaluate the router (reads shards from the store, never the database). */
export async function fitRouter(
  store: ObjectStore,
  log: Logger,
  input: RouterFitInput,
  progress: (stage: string, done: number, total: number) => void = () => {},
): Promise<RouterFit> {
  const K = input.shards.length;
  const load = async (split: 'train' | 'val') => {
    const sets: ImageSet[] = [];
    for (const pair of input.shards) {
      const { key } = pair[split];
      sets.push(decodeShard(await store.getBytes(key), { file: key }));
    }
    return union(sets);
  };
  progress('loading shards', 0, input.steps);
  const train = await load('train');
  const val = await load('val');
  const [h, w, c] = train.shape;
  // 4x4 tokens of (h/4)-pixel patches when the size allows (7 px at 28 px): the router only
  // needs the coarse layout to tell clusters apart, and 16 tokens keep it ~3x cheaper than 49.
  const patch = h % 4 === 0 ? h / 4 : h % 2 === 0 ? 2 : 1;
  const numClasses = input.numClasses ?? 0;
  const config = routerConfigFor(h, c, patch, K, numClasses);
  const trainer = await RouterTrainer.create({
    network: { kind: 'router', config },
    optimizer: { learningRate: LEARNING_RATE },
    seed: input.seed,
    threads: 1,
  });
  try {
    const size = h * w * c;
    const rng = createRng(deriveSeed(input.seed, 'router-batches'));
    let loss = 0;
    // One expert (a monolith): a one-way softmax answers it whatever the weights, so there is
    // nothing to learn; the untrained router is stored all the same, keeping the manifest's form.
    const steps = K === 1 ? 0 : input.steps;
    for (let step = 0; step < steps; step++) {
      trainer.learningRate = routerLearningRate(step);
      const x = new Float32Array(ROUTER_BATCH * size);
      const y = new Int32Array(ROUTER_BATCH);
      const labels = new Int32Array(ROUTER_BATCH);
      for (let b = 0; b < ROUTER_BATCH; b++) {
        // Uniform over the union: clusters in their natural proportions, the prior included.
        const i = rng.int(train.count);
        x.set(train.pixels.subarray(i * size, (i + 1) * size), b * size);
        y[b] = train.clusters[i]!;
        labels[b] = train.labels[i]!;
      }
      let r: { loss: number };
      if (numClasses > 0) {
        const both = classRouterBatch(x, y, labels, numClasses);
        r = await trainer.step(
          { data: both.pixels, shape: [2 * ROUTER_BATCH, h, w, c] },
          both.clusters,
          { labels: both.labels },
        );
      } else r = await trainer.step({ data: x, shape: [ROUTER_BATCH, h, w, c] }, y);
      // Let the event loop breathe between steps (on the main thread with computeThreads 0).
      await new Promise((resolve) => setImmediate(resolve));
      loss = 0.95 * loss + 0.05 * r.loss;
      progress('training the router', step + 1, steps);
      if ((step + 1) % 100 === 0)
        log.info({ run: input.runId, step: step + 1, loss }, 'router training');
    }
    progress('evaluating', steps, steps);
    const evalX = new Float32Array(val.count * EVAL_REPEATS * size);
    const evalY = new Int32Array(val.count * EVAL_REPEATS);
    for (let r = 0; r < EVAL_REPEATS; r++) {
      evalX.set(val.pixels, r * val.count * size);
      evalY.set(val.clusters, r * val.count);
    }
    // Without the class (a class-conditional router's null class): p(k | x_t), the accuracy
    // every router reports, comparable across runs.
    const ev = trainer.evaluate(
      { data: evalX, shape: [val.count * EVAL_REPEATS, h, w, c] },
      evalY,
      deriveSeed(input.seed, 'router-eval'),
      BINS,
    );
    const counts = new Array<number>(K).fill(0);
    for (const k of train.clusters) counts[k]! += 1;
    const accuracy: RouterAccuracy = {
      edges: Array.from({ length: BINS + 1 }, (_, i) => i / BINS),
      accuracy: ev.accuracy.map((a) => (Number.isFinite(a) ? a : 0)),
      chance: Math.max(...counts) / train.count,
      counts: ev.counts,
    };
    const bytes = await trainer.save();
    return {
      bytes,
      config,
      steps: trainer.stepCount,
      loss: ev.loss,
      accuracy,
    };
  } finally {
    await trainer.dispose();
  }
}
