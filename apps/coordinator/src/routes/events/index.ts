import { ErrorReply, EventList, EventQuery, IdParams } from '@archipelago/protocol';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { eq } from 'drizzle-orm';
import { runs } from '../../db/schema/index.js';
import { notFound } from '../../errors.js';
import { listEvents } from '../../services/events.js';

/** The event log: leases, expiries, checkpoints, validation, run transitions (newest first). */
const routes: FastifyPluginAsyncTypebox = async (app) => {
  const { db } = app.coordinator;

  app.get(
    '/runs/:id/events',
    {
      schema: {
        tags: ['runs'],
        summary: "A run's event log, newest first",
        description: 'Page back with `before` = the smallest id seen.',
        params: IdParams,
        querystring: EventQuery,
        response: { 200: EventList, 404: ErrorReply },
      },
    },
    async (request) => {
      const runId = request.params.id;
      if (!db.select({ id: runs.id }).from(runs).where(eq(runs.id, runId)).get())
        throw notFound('run', runId);
      return { events: listEvents(db, { runId, ...request.query }) };
    },
  );

  app.get(
    '/events',
    {
      schema: {
        tags: ['runs'],
        summary: 'The whole event log (every run, tokens, workers), newest first',
        querystring: EventQuery,
        response: { 200: EventList },
      },
    },
    async (request) => ({ events: listEvents(db, request.query) }),
  );
};

export default routes;
