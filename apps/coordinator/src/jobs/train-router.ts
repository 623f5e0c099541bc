import { trainRouter } from '../services/router-training.js';
import type { JobDeps } from './handlers.js';
import type { JobContext } from './job-queue.js';

/** Processor of `train-router`: train and store a router for a run whose experts are done. */
export async function trainRouterJob(
  deps: JobDeps,
  ctx: JobContext,
  payload: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const result = await trainRouter(
    { ...deps, steps: deps.config.routerSteps },
    { runId: String(payload.runId), ...(payload.publish === false ? { publish: false } : {}) },
    ctx.progress,
  );
  return { ...result };
}
