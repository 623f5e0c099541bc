import type { InferenceDefaults } from '@archipelago/protocol';
import { PermanentJobError } from '../errors.js';
import { scorePublished } from '../lifecycle/pipeline.js';
import { planScore } from '../services/ensemble-scores.js';
import {
  measurePublish,
  type PublishInput,
  preparePublish,
  recordPublish,
  signAndStoreManifest,
} from '../services/ensembles.js';
import type { ComputeDeps, JobDeps } from './handlers.js';
import type { JobCompute, JobPhases } from './phases.js';

const payloadOf = (payload: Record<string, unknown>) => ({
  runId: String(payload.runId),
  ...(typeof payload.routerId === 'string' ? { routerId: payload.routerId } : {}),
});

/** Compute of `publish-ensemble`: measure the routing strategies (the inference defaults). */
export function publishEnsembleCompute(deps: ComputeDeps): JobCompute {
  return async (ctx, input) => {
    const p = input as unknown as PublishInput;
    const inference = await measurePublish(deps.store, p, ctx.progress);
    return { routerId: p.router.id, inference };
  };
}

/**
 * `publish-ensemble`: the manifest's body comes from the database, here, in prepare and again in
 * apply; only the measured inference defaults come from the processor. The coordinator signs (its
 * key never leaves its data directory), stores the manifest, and records it with the run published
 * and, for a new ensemble, its score's plan: a queued `score-ensemble` job, or why there is none.
 */
export function publishEnsembleJob(deps: JobDeps, compute: JobCompute): JobPhases {
  return {
    prepare(_ctx, payload) {
      return {
        input: preparePublish(deps.db, payloadOf(payload)) as unknown as Record<string, unknown>,
      };
    },
    compute,
    async apply(ctx, output) {
      const routerId = output.routerId;
      if (typeof routerId !== 'string' || !output.inference || typeof output.inference !== 'object')
        throw new PermanentJobError(
          'a publish result without its router id and inference defaults',
        );
      const input = preparePublish(deps.db, { ...payloadOf(ctx.row.payload), routerId });
      const { manifest, sha256 } = await signAndStoreManifest(
        deps,
        input,
        output.inference as InferenceDefaults,
      );
      const plan = await planScore(manifest, deps.config.scoreSamples);
      ctx.commit((tx) => {
        const published = recordPublish(tx, input, manifest, sha256);
        // A new ensemble is scored by a job of its own (the same manifest again is not).
        const scoreJob = published.created
          ? scorePublished(tx, { ensembleId: manifest.id, runId: input.runId }, plan)
          : undefined;
        return { ...published, ...(scoreJob ? { scoreJobId: scoreJob.id } : {}) };
      });
      deps.log.info(
        { run: input.runId, ensemble: manifest.id, score: plan.status },
        'ensemble published',
      );
    },
  };
}
