import path from 'node:path';
import { type BackendInfo, initBackend } from '@archipelago/models';
import { createObjectStore, type ObjectStore } from '@archipelago/storage';
import { type Logger, pino } from 'pino';
import { ComputePool } from './compute/compute-pool.js';
import type { CoordinatorConfig } from './config.js';
import { startCheckpointer } from './db/checkpointer.js';
import { type Db, openDatabase } from './db/database.js';
import { loadOrCreateSigningKey, type SigningKey } from './ensembles/signing-key.js';
import { createJobHandlers, isPermanentJobError } from './jobs/handlers.js';
import { JobQueue } from './jobs/job-queue.js';
import { failRunForJob } from './lifecycle/pipeline.js';
import { type AdminKey, loadAdminKey, loadOrCreateSecret } from './secrets.js';
import { failScoreForJob } from './services/ensemble-scores.js';
import { SamplingService } from './services/sampling.js';
import { WorkerHub } from './workers/worker-hub.js';

/** Everything the server, the CLI and job processors share: one per data directory. */
export interface Coordinator {
  readonly config: CoordinatorConfig;
  readonly db: Db;
  readonly store: ObjectStore;
  readonly jobs: JobQueue;
  readonly log: Logger;
  readonly adminKey: AdminKey;
  /** The TensorFlow.js backend clustering and (later) sampling run on. */
  readonly backend: BackendInfo;
  /** Live worker connections and the lease clock (started by the server, not the CLI). */
  readonly hub: WorkerHub;
  /** The Ed25519 key manifests are signed with. */
  readonly signingKey: SigningKey;
  readonly sampling: SamplingService;
  /** The threads sampling and validation run on; null with `computeThreads` 0. */
  readonly compute: ComputePool | null;
  close(): Promise<void>;
}

export interface OpenCoordinatorOptions {
  log?: Logger;
  /** Re-queue unfinished jobs from the database and start processing (default true). */
  startJobs?: boolean;
  /**
   * With Redis: take jobs / sampling requests in this process (default: config.localJobs).
   * `coordinator jobs` and `coordinator sampler` set these.
   */
  processJobs?: boolean;
  processSampling?: boolean;
}

/** The object store of a configuration: S3 when configured, else `<dataDir>/objects`. */
export function openStore(config: CoordinatorConfig): ObjectStore {
  return config.s3
    ? createObjectStore({ kind: 's3', ...config.s3 })
    : createObjectStore({
        kind: 'local',
        root: path.join(config.dataDir, 'objects'),
        baseUrl: `${config.publicUrl}/store`,
        secret: loadOrCreateSecret(config.dataDir, 'store-hmac'),
      });
}

export async function openCoordinator(
  config: CoordinatorConfig,
  options: OpenCoordinatorOptions = {},
): Promise<Coordinator> {
  const log = options.log ?? pino({ level: config.logLevel });
  const backend = await initBackend();
  const dbFile = path.join(config.dataDir, 'coordinator.sqlite');
  const db = openDatabase({
    file: dbFile,
    ...(config.migrationsDir ? { migrationsDir: config.migrationsDir } : {}),
  });
  // WAL checkpoints on a thread of their own, not inside a commit on the loop (db/checkpointer.ts).
  const checkpointer = startCheckpointer(db.$client, dbFile, {
    onFailure: (err) =>
      log.warn({ err }, 'WAL checkpoint thread failed; the database checkpoints on commit again'),
  });
  const store = openStore(config);
  const adminKey = loadAdminKey(config.dataDir, config.adminKey);
  const signingKey = loadOrCreateSigningKey(config.dataDir);
  const compute =
    config.computeThreads > 0
      ? new ComputePool({ config, backend: backend.name, threads: config.computeThreads, log })
      : null;
  const deps = { db, store, log, signingKey, config, ...(compute ? { compute } : {}) };
  const redis = config.redisUrl ? { url: config.redisUrl, prefix: config.redisPrefix } : undefined;
  const jobs = new JobQueue({
    db,
    log,
    handlers: createJobHandlers(deps),
    concurrency: config.jobConcurrency,
    isPermanent: isPermanentJobError,
    onFailed: (job) => {
      failRunForJob(db, job);
      failScoreForJob(db, job);
    },
    ...(redis
      ? { redis, process: options.processJobs ?? config.localJobs, staleAfterMs: config.jobStaleMs }
      : {}),
  });
  const sampling = new SamplingService({
    store,
    log,
    local: options.processSampling ?? config.localJobs,
    maxQueued: config.maxQueuedSamples,
    maxPerClient: config.maxQueuedSamplesPerClient,
    ...(redis ? { redis } : {}),
    ...(compute ? { compute } : {}),
  });
  const hub = new WorkerHub({ db, store, log, config, dispatchJob: (id) => jobs.dispatch(id) });
  if (options.startJobs !== false) {
    await jobs.start();
    await sampling.start();
    const recovered = jobs.recover();
    if (recovered > 0) log.info({ recovered, mode: jobs.mode }, 'dispatched unfinished jobs');
  }
  return {
    config,
    db,
    store,
    jobs,
    log,
    adminKey,
    backend,
    hub,
    signingKey,
    sampling,
    compute,
    async close() {
      hub.stop();
      await sampling.close();
      await jobs.stop();
      await compute?.close();
      await store.close();
      await checkpointer.stop();
      db.$client.close();
    },
  };
}
