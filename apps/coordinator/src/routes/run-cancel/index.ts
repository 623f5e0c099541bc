import { ErrorReply, IdParams, Run } from '@archipelago/protocol';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { cancelRun } from '../../services/cancel-run.js';

/** Organiser actions on a run. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/runs/:id/cancel',
    {
      onRequest: app.requireAdmin,
      schema: {
        tags: ['runs'],
        summary: 'Cancel a run: no more leases, active ones revoked',
        description:
          'Idempotent for a cancelled run; 409 for a published or failed one. Workers training its experts are told at their next heartbeat.',
        security: [{ adminKey: [] }],
        params: IdParams,
        response: { 200: Run, 401: ErrorReply, 403: ErrorReply, 404: ErrorReply, 409: ErrorReply },
      },
    },
    async (request) => {
      const { run, revoked } = cancelRun(app.coordinator.db, request.params.id);
      if (revoked.length > 0)
        request.log.info({ run: run.id, leases: revoked.map((l) => l.id) }, 'run cancelled');
      return run;
    },
  );
};

export default routes;
