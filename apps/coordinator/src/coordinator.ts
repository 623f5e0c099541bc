import path from 'node:path';
import { type BackendInfo, initBackend } from '@archipelago/models';
import { createObjectStore, type ObjectStore } from '@archipelago/storage';
import { type Logger, pino } from 'pino';
import type { CoordinatorConfig } from './config.js';
import { type Db, openDatabase } from './db/database.js';
import { createJobHandlers, isPermanentJobError } from './jobs/handlers.js';
import { JobQueue } from './jobs/job-queue.js';
import { type AdminKey, loadAdminKey, loadOrCreateSecret } from './secrets.js';
import { failRunForJob } from './services/runs.js';
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
  close(): Promise<void>;
}

export interface OpenCoordinatorOptions {
  log?: Logger;
  /** Re-queue unfinished jobs from the database and start processing (default true). */
  startJobs?: boolean;
}

export async function openCoordinator(
  config: CoordinatorConfig,
  options: OpenCoordinatorOptions = {},
): Promise<Coordinator> {
  const log = options.log ?? pino({ level: config.logLevel });
  const backend = await initBackend();
  const db = openDatabase({
    file: path.join(config.dataDir, 'coordinator.sqlite'),
    ...(config.migrationsDir ? { migrationsDir: config.migrationsDir } : {}),
  });
  const store = config.s3
    ? createObjectStore({ kind: 's3', ...config.s3 })
    : createObjectStore({
        kind: 'local',
        root: path.join(config.dataDir, 'objects'),
        baseUrl: `${config.publicUrl}/store`,
        secret: loadOrCreateSecret(config.dataDir, 'store-hmac'),
      });
  const adminKey = loadAdminKey(config.dataDir, config.adminKey);
  const deps = { db, store, log };
  const jobs = new JobQueue({
    db,
    log,
    handlers: createJobHandlers(deps),
    concurrency: config.jobConcurrency,
    isPermanent: isPermanentJobError,
    onFailed: (job) => failRunForJob(db, job),
  });
  const hub = new WorkerHub({ db, store, log, config });
  if (options.startJobs !== false) {
    const recovered = jobs.recover();
    if (recovered > 0) log.info({ recovered }, 're-queued unfinished jobs');
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
    async close() {
      hub.stop();
      await jobs.stop();
      await store.close();
      db.$client.close();
    },
  };
}
