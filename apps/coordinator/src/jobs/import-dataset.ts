import type { ImportDatasetBody } from '@archipelago/protocol';
import {
  applyImport,
  computeImport,
  type DatasetDeps,
  type ImportInput,
  type ImportOutput,
  importDone,
  importReadsCoordinatorDisk,
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
 * `import-dataset`: a re-run of a finished import is done at once; a folder or an embeddings file
 * is on the coordinator's disk, so such an import is computed by the coordinator itself (a
 * built-in dataset is computed anywhere).
 */
export function importDatasetJob(deps: DatasetDeps, compute: JobCompute): JobPhases {
  return {
    prepare(_ctx, payload) {
      const p = payload as unknown as ImportDatasetPayload;
      const done = importDone(deps.db, {
        datasetId: p.datasetId,
        ...(p.clusteringId ? { clusteringId: p.clusteringId } : {}),
      });
      return done ? { result: { ...done } } : { input: payload };
    },
    compute,
    apply(ctx, output) {
      ctx.commit((tx) => ({ ...applyImport(tx, output as unknown as ImportOutput) }));
    },
    local: (payload) =>
      importReadsCoordinatorDisk((payload as unknown as ImportDatasetPayload).body),
  };
}
