import { validateCheckpoint } from '../services/validation.js';
import type { JobDeps } from './handlers.js';
import type { JobContext } from './job-queue.js';

/** Processor of `validate-checkpoint`: judge an expert's final checkpoint (services/validation). */
export async function validateCheckpointJob(
  deps: JobDeps,
  ctx: JobContext,
  payload: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const outcome = await validateCheckpoint(
    deps,
    { expertId: String(payload.expertId), checkpointId: String(payload.checkpointId) },
    ctx.progress,
  );
  return { ...outcome };
}
