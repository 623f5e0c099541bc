import { ErrorReply, IdParams, RunMetrics } from '@archipelago/protocol';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { MAX_CURVE_POINTS, runMetrics } from '../../services/run-metrics.js';

/** Training curves recorded from workers' heartbeats. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/runs/:id/metrics',
    {
      schema: {
        tags: ['runs'],
        summary: "Each expert's training curve (loss and images/s by step)",
        description: `Ordered by step; curves longer than ${MAX_CURVE_POINTS} points are thinned evenly.`,
        params: IdParams,
        response: { 200: RunMetrics, 404: ErrorReply },
      },
    },
    async (request) => runMetrics(app.coordinator.db, request.params.id),
  );
};

export default routes;
