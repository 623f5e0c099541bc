import {
  applyCluster,
  bindClusteringRun,
  type ClusterInput,
  type ClusteringWrite,
  type ClusterPayload,
  computeCluster,
  type DatasetDeps,
  prepareCluster,
} from '../services/datasets.js';
import type { ComputeDeps } from './handlers.js';
import type { JobCompute, JobPhases } from './phases.js';

/** Compute of `cluster-dataset`: cluster the stored features, write the shards and preview. */
export function clusterDatasetCompute(deps: ComputeDeps): JobCompute {
  return async (ctx, input) => ({
    ...(await computeCluster(deps, input as unknown as ClusterInput, ctx.progress)),
  });
}

/** `cluster-dataset`: cluster an imported dataset into K shards (and start a waiting run). */
export function clusterDatasetJob(deps: DatasetDeps, compute: JobCompute): JobPhases {
  return {
    prepare(_ctx, payload) {
      const p = payload as unknown as ClusterPayload;
      const prepared = prepareCluster(deps.db, p);
      if (prepared.done)
        return {
          result: { clusteringId: p.clusteringId },
          write: (tx) => bindClusteringRun(tx, p),
        };
      return { input: prepared.input as unknown as Record<string, unknown> };
    },
    compute,
    apply(ctx, output) {
      const p = ctx.row.payload as unknown as ClusterPayload;
      ctx.commit((tx) => {
        applyCluster(tx, p, output as unknown as ClusteringWrite);
        return { clusteringId: p.clusteringId };
      });
    },
  };
}
