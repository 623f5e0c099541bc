import {
  type ClusterPayload,
  clusterStoredDataset,
  type DatasetDeps,
} from '../services/datasets.js';
import type { JobContext } from './job-queue.js';

/** Job processor: cluster an imported dataset into K shards (and start a waiting run). */
export async function clusterDatasetJob(
  deps: DatasetDeps,
  ctx: JobContext,
  payload: ClusterPayload,
) {
  return clusterStoredDataset(deps, payload, ctx.progress);
}
