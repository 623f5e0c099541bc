import {
  applyScore,
  computeScore,
  prepareScore,
  type ScoreInput,
  type ScoreOutcome,
} from '../services/ensemble-scores.js';
import type { ComputeDeps, JobDeps } from './handlers.js';
import type { JobCompute, JobPhases } from './phases.js';

const payloadOf = (payload: Record<string, unknown>) => ({
  ensembleId: String(payload.ensembleId),
});

/** Compute of `score-ensemble`: sample and score the ensemble; store score.json and score.png. */
export function scoreEnsembleCompute(deps: ComputeDeps): JobCompute {
  return async (ctx, input) => ({
    ...(await computeScore(deps, input as unknown as ScoreInput, ctx.progress)),
  });
}

/**
 * `score-ensemble`, queued when an ensemble is published: the coordinator records the stored
 * score (a failure for good is recorded by services/ensemble-scores.ts failScoreForJob).
 */
export function scoreEnsembleJob(deps: JobDeps, compute: JobCompute): JobPhases {
  return {
    prepare(_ctx, payload) {
      const prepared = prepareScore(deps.db, payloadOf(payload));
      if ('skipped' in prepared) return { result: prepared.skipped };
      return { input: prepared.input as unknown as Record<string, unknown> };
    },
    compute,
    apply(ctx, output) {
      const { ensembleId } = payloadOf(ctx.row.payload);
      const outcome = output as unknown as ScoreOutcome;
      ctx.commit((tx) => {
        applyScore(tx, ensembleId, outcome);
        return { ensembleId, ...outcome.summary };
      });
      deps.log.info({ ensemble: ensembleId, ...outcome.summary }, 'ensemble scored');
    },
  };
}
