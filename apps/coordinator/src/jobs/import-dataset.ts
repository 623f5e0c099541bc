import type { ImportDatasetBody } from '@archipelago/protocol';
import { type DatasetDeps, importDataset } from '../services/datasets.js';
import type { JobContext } from './job-queue.js';

export interface ImportDatasetPayload {
  body: ImportDatasetBody;
  datasetId: string;
  clusteringId?: string;
}

/** Job processor: import (and optionally cluster) a dataset. */
export async function importDatasetJob(
  deps: DatasetDeps,
  ctx: JobContext,
  payload: ImportDatasetPayload,
) {
  const result = await importDataset(
    deps,
    payload.body,
    {
      datasetId: payload.datasetId,
      ...(payload.clusteringId ? { clusteringId: payload.clusteringId } : {}),
    },
    ctx.progress,
  );
  return { ...result };
}
