import { DatasetImportError } from '@archipelago/data';
import type { JobName } from '@archipelago/protocol';
import type { ObjectStore } from '@archipelago/storage';
import { InvalidKeyError } from '@archipelago/storage';
import type { Logger } from 'pino';
import type { ComputePool } from '../compute/compute-pool.js';
import type { SigningKey } from '../ensembles/signing-key.js';
import type { DatasetDeps } from '../services/datasets.js';
import { clusterDatasetCompute, clusterDatasetJob } from './cluster-dataset.js';
import { importDatasetCompute, importDatasetJob } from './import-dataset.js';
import { PermanentJobError } from './job-queue.js';
import type { JobCompute, JobPhases } from './phases.js';
import { publishEnsembleCompute, publishEnsembleJob } from './publish-ensemble.js';
import { scoreEnsembleCompute, scoreEnsembleJob } from './score-ensemble.js';
import { trainRouterCompute, trainRouterJob } from './train-router.js';
import { validateCheckpointCompute, validateCheckpointJob } from './validate-checkpoint.js';

/** What a job's compute may use: the object store, never the database. */
export interface ComputeDeps {
  store: ObjectStore;
  log: Logger;
  /** Compute threads validation and router training run on (off the event loop); else here. */
  compute?: ComputePool | undefined;
}

export interface JobDeps extends DatasetDeps, ComputeDeps {
  signingKey: SigningKey;
  config: { routerSteps: number; scoreSamples: number };
}

/** Job name -> compute: what a job processor (`coordinator jobs`, anywhere) runs. */
export function createJobComputes(deps: ComputeDeps): Record<JobName, JobCompute> {
  return {
    'import-dataset': importDatasetCompute(deps),
    'cluster-dataset': clusterDatasetCompute(deps),
    'validate-checkpoint': validateCheckpointCompute(deps),
    'train-router': trainRouterCompute(deps),
    'publish-ensemble': publishEnsembleCompute(deps),
    'score-ensemble': scoreEnsembleCompute(deps),
  };
}

/** Job name -> its three phases, on the coordinator (the same table in-process and with Redis). */
export function createJobHandlers(deps: JobDeps): Record<JobName, JobPhases> {
  const c = createJobComputes(deps);
  return {
    'import-dataset': importDatasetJob(deps, c['import-dataset']),
    'cluster-dataset': clusterDatasetJob(deps, c['cluster-dataset']),
    'validate-checkpoint': validateCheckpointJob(deps, c['validate-checkpoint']),
    'train-router': trainRouterJob(deps, c['train-router']),
    'publish-ensemble': publishEnsembleJob(deps, c['publish-ensemble']),
    'score-ensemble': scoreEnsembleJob(deps, c['score-ensemble']),
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
