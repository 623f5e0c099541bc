import type { ImportDatasetBody } from '@archipelago/protocol';
import {
  applyImport,
  computeImport,
  type DatasetDeps,
  type ImportInput,
  type ImportOutput,
  importDone,
  importReadsCoordinatorDisk,
  importStagingPrefix,
  stageImport,
} from '../services/datasets.js';
import type { ComputeDeps } from './handlers.js';
import type { JobCompute, JobPhases } from './phases.js';

export interface ImportDatasetPayload {
  body: ImportDatasetBody;
  datasetId: string;
  clusteringId?: string;
}

/** Compute of `import-dataset`: read, featurise, store (and optionally cluster) the images. */
export function importDatasetCompute(deps: ComputeDeps): JobCompute {
  return async (ctx, input) => ({
    ...(await computeImport(deps, input as unknown as ImportInput, ctx.progress)),
  });
}

/**
 * `import-dataset`: a re-run of a finished import is done at once. A folder or an embeddings file
 * is on the coordinator's disk: when the import is computed elsewhere, prepare stages those files
 * in the object store, and they are deleted once the import is recorded.
 */
export function importDatasetJob(deps: DatasetDeps, compute: JobCompute): JobPhases {
  return {
    async prepare(ctx, payload) {
      const p = payload as unknown as ImportDatasetPayload;
      const done = importDone(deps.db, {
        datasetId: p.datasetId,
        ...(p.clusteringId ? { clusteringId: p.clusteringId } : {}),
      });
      if (done) return { result: { ...done } };
      if (!ctx.remote) return { input: payload };
      ctx.progress('staging files', 0, 1);
      const staged = await stageImport(deps.store, p.body, p.datasetId);
      ctx.progress('staging files', 1, 1);
      return { input: { ...payload, ...(staged ? { staged } : {}) } };
    },
    compute,
    async apply(ctx, output) {
      const p = ctx.row.payload as unknown as ImportDatasetPayload;
      ctx.commit((tx) => ({ ...applyImport(tx, output as unknown as ImportOutput) }));
      if (!importReadsCoordinatorDisk(p.body)) return;
      await deps.store
        .deletePrefix(importStagingPrefix(p.datasetId))
        .catch((err) => deps.log.warn({ err }, 'could not delete staged import files'));
    },
  };
}
