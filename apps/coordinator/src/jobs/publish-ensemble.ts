import { publishEnsemble } from '../services/ensembles.js';
import type { JobDeps } from './handlers.js';
import type { JobContext } from './job-queue.js';

/** Processor of `publish-ensemble`: measure, sign and store the manifest; the run is published. */
export async function publishEnsembleJob(
  deps: JobDeps,
  ctx: JobContext,
  payload: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const result = await publishEnsemble(
    deps,
    {
      runId: String(payload.runId),
      ...(typeof payload.routerId === 'string' ? { routerId: payload.routerId } : {}),
    },
    ctx.progress,
  );
  return { ...result };
}
