import {
  applyRouter,
  computeRouter,
  prepareRouter,
  type RouterFitInput,
  type RouterPayload,
  type StoredRouter,
} from '../services/router-training.js';
import type { ComputeDeps, JobDeps } from './handlers.js';
import type { JobCompute, JobPhases } from './phases.js';

const payloadOf = (payload: Record<string, unknown>): RouterPayload => ({
  runId: String(payload.runId),
  ...(payload.publish === false ? { publish: false } : {}),
});

/** Compute of `train-router`: fit the router and store it, content-addressed and create-only. */
export function trainRouterCompute(deps: ComputeDeps): JobCompute {
  return async (ctx, input) => ({
    ...(await computeRouter(deps, input as unknown as RouterFitInput, ctx.progress)),
  });
}

/** `train-router`: train and store a router for a run whose experts are done. */
export function trainRouterJob(deps: JobDeps, compute: JobCompute): JobPhases {
  return {
    prepare(_ctx, payload) {
      const input = prepareRouter(deps.db, payloadOf(payload), deps.config.routerSteps);
      return { input: input as unknown as Record<string, unknown> };
    },
    compute,
    apply(ctx, output) {
      const payload = payloadOf(ctx.row.payload);
      ctx.commit((tx) => ({ ...applyRouter(tx, payload, output as unknown as StoredRouter) }));
    },
  };
}
