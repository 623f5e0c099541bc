import { ErrorReply, IdParams, JobAccepted } from '@archipelago/protocol';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { DomainError } from '../../errors.js';
import { acceptJob } from '../../services/jobs.js';
import { getRun } from '../../services/runs.js';

/** Router training for a finished run, which publishes a new ensemble. */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { db, jobs } = app.coordinator;

  app.post(
    '/runs/:id/router',
    {
      onRequest: app.requireAdmin,
      schema: {
        tags: ['ensembles'],
        summary:
          'Train a new router for a run whose experts are all done (then publish a new ensemble)',
        security: [{ adminKey: [] }],
        params: IdParams,
        response: {
          202: JobAccepted,
          401: ErrorReply,
          403: ErrorReply,
          404: ErrorReply,
          409: ErrorReply,
        },
      },
    },
    async (request, reply) => {
      const run = getRun(db, request.params.id);
      const notDone = run.experts.find((e) => e.status !== 'done');
      if (notDone)
        throw new DomainError(
          'conflict',
          `expert ${notDone.cluster} is ${notDone.status}; the router needs every expert done`,
        );
      const job = jobs.enqueue('train-router', { runId: run.id }, { runId: run.id });
      return acceptJob(reply, job);
    },
  );
};

export default routes;
