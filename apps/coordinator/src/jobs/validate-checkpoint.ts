import type { CheckpointRow } from '../db/schema/index.js';
import {
  afterValidation,
  applyValidation,
  computeValidation,
  prepareValidation,
  type ValidationInput,
  type ValidationOutcome,
  type ValidationPayload,
} from '../services/validation.js';
import type { ComputeDeps, JobDeps } from './handlers.js';
import type { JobCompute, JobPhases } from './phases.js';

const payloadOf = (payload: Record<string, unknown>): ValidationPayload => ({
  expertId: String(payload.expertId),
  checkpointId: String(payload.checkpointId),
});

/** Compute of `validate-checkpoint`: the verdict (services/validation.ts judgeCheckpoint). */
export function validateCheckpointCompute(deps: ComputeDeps): JobCompute {
  return async (ctx, input) => ({
    ...(await computeValidation(deps, input as unknown as ValidationInput, ctx.progress)),
  });
}

/**
 * `validate-checkpoint`: a stale job (the expert moved on) is skipped in prepare, and a verdict
 * that arrives once the expert has moved on is not recorded.
 */
export function validateCheckpointJob(deps: JobDeps, compute: JobCompute): JobPhases {
  return {
    prepare(_ctx, payload) {
      const prepared = prepareValidation(deps.db, payloadOf(payload));
      if ('skipped' in prepared) return { result: { ...prepared.skipped } };
      return { input: prepared.input as unknown as Record<string, unknown> };
    },
    compute,
    async apply(ctx, output) {
      const outcome = output as unknown as ValidationOutcome;
      const payload = payloadOf(ctx.row.payload);
      let recorded: CheckpointRow | undefined;
      ctx.commit((tx) => {
        const applied = applyValidation(tx, payload, outcome);
        if ('skipped' in applied) return { ...applied.skipped };
        recorded = applied.recorded;
        return { ...outcome };
      });
      if (!recorded) return;
      deps.log.info({ expert: payload.expertId, ...outcome }, 'checkpoint validated');
      await afterValidation(deps, recorded, outcome);
    },
  };
}
