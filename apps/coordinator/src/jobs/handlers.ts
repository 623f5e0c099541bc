import { DatasetImportError } from '@archipelago/data';
import type { JobName } from '@archipelago/protocol';
import { InvalidKeyError } from '@archipelago/storage';
import type { ClusterPayload, DatasetDeps } from '../services/datasets.js';
import { clusterDatasetJob } from './cluster-dataset.js';
import { type ImportDatasetPayload, importDatasetJob } from './import-dataset.js';
import { type JobHandler, PermanentJobError } from './job-queue.js';

/** Queue name -> processor. The same table serves the in-process queue and (later) BullMQ. */
export function createJobHandlers(deps: DatasetDeps): Partial<Record<JobName, JobHandler>> {
  return {
    'import-dataset': (ctx, payload) =>
      importDatasetJob(deps, ctx, payload as unknown as ImportDatasetPayload),
    'cluster-dataset': (ctx, payload) =>
      clusterDatasetJob(deps, ctx, payload as unknown as ClusterPayload),
  };
}

/** Bad input does not get better by retrying. */
export function isPermanentJobError(err: unknown): boolean {
  return (
    err instanceof PermanentJobError ||
    err instanceof DatasetImportError ||
    err instanceof InvalidKeyError
  );
}
