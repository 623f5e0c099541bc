import { initialisingFamilies } from '@archipelago/diffusion';
import {
  type CreateRunBody,
  canonicalJson,
  DEFAULT_FM_TIME_SAMPLING,
  type Expert,
  type ObjectiveSpec,
  type Run,
  type RunConfig,
  specSummary,
} from '@archipelago/protocol';
import { and, asc, desc, eq } from 'drizzle-orm';
import type { Db, Tx } from '../db/database.js';
import {
  clusterings,
  datasets,
  type ExpertRow,
  experts,
  type RunRow,
  runs,
  shards,
} from '../db/schema/index.js';
import { DomainError, notFound } from '../errors.js';
import { mixText, specsForNewRun } from '../experts/objective-specs.js';
import { newId } from '../ids.js';
import { EVENTS, recordEvent } from '../lifecycle/events.js';
import { INITIAL_EXPERT_STATUS } from '../lifecycle/expert-lifecycle.js';
import { clusterForNewRun, type JobDispatcher } from '../lifecycle/pipeline.js';
import { INITIAL_RUN_STATUS, transitionRun } from '../lifecycle/run-lifecycle.js';
import { DEFAULT_ACCEPTANCE } from './acceptance.js';
import { architectureOfRun } from './validation.js';

export interface RunDeps {
  db: Db;
  jobs: JobDispatcher;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/**
 * Create a run: K experts over a clustering of the dataset with K clusters (K = 1: a monolith,
 * one expert on the whole training set). An existing clustering with the same K, seed and
 * assignment (semantic or random shards) is reused; otherwise the run starts in `clustering` and a
 * cluster job binds its experts to shards when it finishes.
 */
export function createRun(deps: RunDeps, body: CreateRunBody): Run {
  const { db } = deps;
  const dataset = db.select().from(datasets).where(eq(datasets.id, body.datasetId)).get();
  if (!dataset) throw notFound('dataset', body.datasetId);
  const k = body.experts;
  if (k > dataset.count) {
    throw new DomainError(
      'too_many_experts',
      `${k} experts for ${dataset.count} images: each expert needs its own cluster of images`,
    );
  }
  const resolution = body.resolution ?? dataset.height;
  if (resolution !== dataset.height || dataset.height !== dataset.width) {
    throw new DomainError(
      'resolution_mismatch',
      `resolution ${resolution} differs from dataset ${dataset.id} (${dataset.width}x${dataset.height}); import the dataset at ${resolution} px instead`,
    );
  }
  const seed = body.seed ?? 0;
  const stepsPerExpert = body.stepsPerExpert;
  const config: RunConfig = {
    resolution,
    channels: dataset.channels,
    model: body.model ?? 'tiny',
    ...(body.patchSize !== undefined ? { patchSize: body.patchSize } : {}),
    schedule: body.schedule ?? 'cosine',
    fmTimeSampling: body.fmTimeSampling ?? DEFAULT_FM_TIME_SAMPLING,
    stepsPerExpert,
    checkpointInterval: body.checkpointInterval ?? Math.max(1, Math.floor(stepsPerExpert / 10)),
    batchSize: body.batchSize ?? 64,
    learningRate: body.learningRate ?? 3e-4,
    seed,
    numClasses: dataset.classNames.length,
    initFmFromDdpm: body.initFmFromDdpm ?? false,
    // The bar its experts are accepted by, defaults filled in now (docs/method.md §12).
    acceptance: { ...DEFAULT_ACCEPTANCE, ...body.acceptance },
  };
  const specs = specsForNewRun(body.objectives, k, config);
  if (body.initFrom) {
    if (config.initFmFromDdpm) {
      throw invalidInitFrom(
        'conflict',
        'initFrom and initFmFromDdpm both name where FM experts start; give one',
      );
    }
    const donor = initFromDonor(db, body.initFrom, config, specs);
    config.initFrom = { ...body.initFrom, expertId: donor.id };
  }
  if (config.patchSize !== undefined && resolution % config.patchSize !== 0) {
    throw new DomainError(
      'invalid_patch_size',
      `patchSize ${config.patchSize} does not divide the resolution ${resolution}`,
    );
  }
  if (config.checkpointInterval > stepsPerExpert) {
    throw new DomainError(
      'invalid_checkpoint_interval',
      `checkpointInterval ${config.checkpointInterval} exceeds stepsPerExpert ${stepsPerExpert}`,
    );
  }

  let clusteringId: string | null = null;
  if (body.clusteringId) {
    const c = db.select().from(clusterings).where(eq(clusterings.id, body.clusteringId)).get();
    if (!c || c.datasetId !== dataset.id) {
      throw notFound(`clustering of dataset ${dataset.id}:`, body.clusteringId);
    }
    if (c.k !== k) {
      throw new DomainError(
        'clustering_mismatch',
        `clustering ${c.id} has ${c.k} clusters, the run asks for ${k} experts`,
      );
    }
    if (body.assignment !== undefined && c.assignment !== body.assignment) {
      throw new DomainError(
        'clustering_mismatch',
        `clustering ${c.id} has ${c.assignment} shards, the run asks for ${body.assignment} ones`,
      );
    }
    clusteringId = c.id;
  } else {
    const reusable = db
      .select()
      .from(clusterings)
      .where(
        and(
          eq(clusterings.datasetId, dataset.id),
          eq(clusterings.k, k),
          eq(clusterings.seed, seed),
          eq(clusterings.assignment, body.assignment ?? 'semantic'),
        ),
      )
      .orderBy(desc(clusterings.createdAt))
      .all()
      .find(
        (c) =>
          (body.fineK === undefined || c.fineK === body.fineK) &&
          (body.valFraction === undefined || c.valFraction === body.valFraction),
      );
    clusteringId = reusable?.id ?? null;
  }

  const runId = newId('run');
  const now = new Date();
  const clusterJob = db.transaction((tx) => {
    tx.insert(runs)
      .values({
        id: runId,
        name: body.name ?? `${dataset.name} x${k}`,
        datasetId: dataset.id,
        clusteringId,
        status: INITIAL_RUN_STATUS,
        k,
        objectives: mixText(body.objectives),
        fineK: body.fineK ?? null,
        valFraction: body.valFraction ?? null,
        config,
        startedAt: now,
      })
      .run();
    specs.forEach((spec, cluster) => {
      const summary: { objective: Expert['objective']; schedule?: RunConfig['schedule'] } = spec
        ? specSummary(spec)
        : { objective: 'any' };
      tx.insert(experts)
        .values({
          id: newId('expert'),
          runId,
          cluster,
          objective: summary.objective,
          // An `any` expert shows the schedule it would take as a DDPM-schedule expert.
          schedule: spec ? (summary.schedule ?? null) : config.schedule,
          spec,
          status: INITIAL_EXPERT_STATUS,
          targetSteps: stepsPerExpert,
        })
        .run();
    });
    recordEvent(tx, EVENTS.runCreated, {
      runId,
      datasetId: dataset.id,
      data: { k, objectives: mixText(body.objectives), clusteringId },
    });
    if (clusteringId) {
      bindRunToClustering(tx, runId, clusteringId);
      return undefined;
    }
    return clusterForNewRun(tx, {
      runId,
      datasetId: dataset.id,
      k,
      seed,
      ...(body.assignment !== undefined ? { assignment: body.assignment } : {}),
      fineK: body.fineK,
      valFraction: body.valFraction,
    });
  });
  if (clusterJob) deps.jobs.dispatch(clusterJob.id);
  return getRun(db, runId);
}

const invalidInitFrom = (reason: string, message: string) =>
  new DomainError('invalid_init_from', message, { reason });

/**
 * The expert an organiser's `initFrom` names, checked to be usable (docs/method.md §7): the final
 * checkpoint of a finished expert of a published run, of a family this run's FM experts may be
 * initialised from, and of this run's architecture (preset, patch, resolution, channels, classes),
 * so that the converted checkpoint loads into the expert it starts.
 */
function initFromDonor(
  db: Db,
  initFrom: NonNullable<CreateRunBody['initFrom']>,
  config: RunConfig,
  specs: readonly (ObjectiveSpec | null)[],
): ExpertRow {
  const { runId, cluster } = initFrom;
  const run = db.select().from(runs).where(eq(runs.id, runId)).get();
  const expert = run
    ? db
        .select()
        .from(experts)
        .where(and(eq(experts.runId, runId), eq(experts.cluster, cluster)))
        .get()
    : undefined;
  if (!run || !expert) {
    throw invalidInitFrom(
      'unknown',
      run ? `run ${runId} has no expert ${cluster}` : `run ${runId} does not exist`,
    );
  }
  if (run.status !== 'published' || expert.status !== 'done' || !expert.checkpointId) {
    throw invalidInitFrom(
      'unfinished',
      `run ${runId} is ${run.status} and its expert ${cluster} ${expert.status}; a donor is an expert of a published run`,
    );
  }
  // An `any` expert may become FM when it is leased; a run of DDPM experts only has no use for it.
  const families = new Set(
    specs.flatMap((s) => (s ? initialisingFamilies(s) : initialisingFamilies({ name: 'fm' }))),
  );
  if (!families.has(expert.objective as ObjectiveSpec['name'])) {
    throw invalidInitFrom(
      'family',
      `expert ${cluster} of run ${runId} is ${expert.objective}; this run's experts can start only from ${[...families].join(', ') || 'nothing (no FM experts)'}`,
    );
  }
  const want = canonicalJson(architectureOfRun(config));
  const have = canonicalJson(architectureOfRun(run.config));
  if (want !== have) {
    throw invalidInitFrom(
      'architecture',
      `run ${runId} trains ${have}, this run ${want}: a checkpoint loads only into its own architecture`,
    );
  }
  return expert;
}

/** Point every expert of the run at its cluster's shards and start training. */
export function bindRunToClustering(tx: Tx, runId: string, clusteringId: string): void {
  const rows = tx.select().from(shards).where(eq(shards.clusteringId, clusteringId)).all();
  const byCluster = new Map<number, { train?: string; val?: string }>();
  for (const s of rows) {
    const entry = byCluster.get(s.cluster) ?? {};
    entry[s.split] = s.id;
    byCluster.set(s.cluster, entry);
  }
  const runExperts = tx.select().from(experts).where(eq(experts.runId, runId)).all();
  for (const e of runExperts) {
    const entry = byCluster.get(e.cluster);
    if (!entry?.train)
      throw new Error(`clustering ${clusteringId} has no train shard for cluster ${e.cluster}`);
    tx.update(experts)
      .set({ trainShardId: entry.train, valShardId: entry.val ?? null })
      .where(eq(experts.id, e.id))
      .run();
  }
  transitionRun(tx, runId, EVENTS.runTraining, {
    set: { clusteringId },
    data: { clusteringId, experts: runExperts.length },
  });
}

function toExpert(row: ExpertRow, sizes: Map<string, number>): Expert {
  return {
    id: row.id,
    cluster: row.cluster,
    objective: row.objective,
    schedule: row.schedule,
    spec: row.spec,
    status: row.status,
    size: row.trainShardId ? (sizes.get(row.trainShardId) ?? null) : null,
    valSize: row.valShardId ? (sizes.get(row.valShardId) ?? null) : null,
    step: row.step,
    targetSteps: row.targetSteps,
    loss: row.loss,
    imagesPerSec: row.imagesPerSec,
    workerId: row.workerId,
    lastHeartbeatAt: iso(row.lastHeartbeatAt),
    checkpointStep: row.checkpointStep,
    validationLoss: row.validationLoss,
    validationBaseline: row.validationBaseline,
    validationError: row.validationError,
    acceptance:
      row.acceptanceMidRatio !== null && row.acceptanceHighRatio !== null
        ? {
            midRatio: row.acceptanceMidRatio,
            highRatio: row.acceptanceHighRatio,
            specificity: row.acceptanceSpecificity,
          }
        : null,
    updatedAt: row.updatedAt.toISOString(),
  };
}

function toRun(db: Db, row: RunRow): Run {
  const expertRows = db
    .select()
    .from(experts)
    .where(eq(experts.runId, row.id))
    .orderBy(asc(experts.cluster))
    .all();
  const sizes = new Map<string, number>();
  const clustering = row.clusteringId
    ? db
        .select({ assignment: clusterings.assignment })
        .from(clusterings)
        .where(eq(clusterings.id, row.clusteringId))
        .get()
    : undefined;
  if (row.clusteringId) {
    for (const s of db
      .select({ id: shards.id, count: shards.count })
      .from(shards)
      .where(eq(shards.clusteringId, row.clusteringId))
      .all()) {
      sizes.set(s.id, s.count);
    }
  }
  return {
    id: row.id,
    name: row.name,
    datasetId: row.datasetId,
    clusteringId: row.clusteringId,
    assignment: clustering?.assignment ?? null,
    status: row.status,
    k: row.k,
    objectives: row.objectives,
    config: row.config,
    error: row.error,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    experts: expertRows.map((e) => toExpert(e, sizes)),
  };
}

export function getRun(db: Db, id: string): Run {
  const row = db.select().from(runs).where(eq(runs.id, id)).get();
  if (!row) throw notFound('run', id);
  return toRun(db, row);
}

export function listRuns(db: Db, limit = 100): Run[] {
  return db
    .select()
    .from(runs)
    .orderBy(desc(runs.createdAt))
    .limit(limit)
    .all()
    .map((r) => toRun(db, r));
}
