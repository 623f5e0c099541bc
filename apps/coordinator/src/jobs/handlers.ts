import { DatasetImportError } from '@archipelago/data';
import type { JobName } from '@archipelago/protocol';
import { InvalidKeyError } from '@archipelago/storage';
import type { ComputePool } from '../compute/compute-pool.js';
import type { SigningKey } from '../ensembles/signing-key.js';
import type { ClusterPayload, DatasetDeps } from '../services/datasets.js';
import { clusterDatasetJob } from './cluster-dataset.js';
import { type ImportDatasetPayload, importDatasetJob } from './import-dataset.js';
import { type JobHandler, PermanentJobError } from './job-queue.js';
import { publishEnsembleJob } from './publish-ensemble.js';
import { trainRouterJob } from './train-router.js';
import { validateCheckpointJob } from './validate-checkpoint.js';

export interface JobDeps extends DatasetDeps {
  signingKey: SigningKey;
  config: { routerSteps: number };
  /** Compute threads validation and router training run on (off the event loop); else here. */
  compute?: ComputePool;
}

/** Queue name -> processor. The same table serves the in-process queue and BullMQ. */
export function createJobHandlers(deps: JobDeps): Record<JobName, JobHandler> {
  return {
    'import-dataset': (ctx, payload) =>
      importDatasetJob(deps, ctx, payload as unknown as ImportDatasetPayload),
    'cluster-dataset': (ctx, payload) =>
      clusterDatasetJob(deps, ctx, payload as unknown as ClusterPayload),
    'validate-checkpoint': (ctx, payload) => validateCheckpointJob(deps, ctx, payload),
    'train-router': (ctx, payload) => trainRouterJob(deps, ctx, payload),
    'publish-ensemble': (ctx, payload) => publishEnsembleJob(deps, ctx, payload),
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
